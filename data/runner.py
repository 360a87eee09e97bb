"""The demo's simulator: a driven, damped pendulum, integrated step by step.

Reads one parameter file (`key = value` lines) and writes `<input minus .inp>.out`.
Usage: python data/runner.py data/point-07.inp
"""

import math
import sys
import time


def read_parameters(path):
    parameters = {}
    with open(path) as stream:
        for line in stream:
            line = line.split("#", 1)[0].strip()
            if line:
                key, value = (part.strip() for part in line.split("=", 1))
                parameters[key] = float(value)
    return parameters


def simulate(damping, drive, frequency, steps, dt=1e-3):
    """Semi-implicit Euler on theta'' = -sin(theta) - damping*theta' + drive*cos(frequency*t)."""
    theta, omega, t = 0.2, 0.0, 0.0
    peak = energy = 0.0
    for _ in range(int(steps)):
        omega += (-math.sin(theta) - damping * omega + drive * math.cos(frequency * t)) * dt
        theta += omega * dt
        t += dt
        peak = max(peak, abs(theta))
    energy = 0.5 * omega * omega + 1.0 - math.cos(theta)
    return theta, omega, peak, energy


def main(path):
    started = time.time()
    parameters = read_parameters(path)
    print(f"simulating {path} with {parameters}", flush=True)
    theta, omega, peak, energy = simulate(**parameters)
    output = path[: -len(".inp")] + ".out" if path.endswith(".inp") else path + ".out"
    with open(output, "w") as stream:
        for key, value in sorted(parameters.items()):
            stream.write(f"{key} = {value:g}\n")
        stream.write(f"theta = {theta:.6f}\nomega = {omega:.6f}\n")
        stream.write(f"peak = {peak:.6f}\nenergy = {energy:.6f}\n")
    print(f"wrote {output} in {time.time() - started:.2f}s")


if __name__ == "__main__":
    main(sys.argv[1])
