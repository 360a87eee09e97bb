"""End to end: several rules that chain like make's pattern rules, a gather over all of a
stage's outputs, and one plan, built before anything runs, that is right in one run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import incrun_env
from test_e2e_incremental import HEAVY_IMPORT

# Each stage leaves a record of its run (`records/`), read back by `stages_ran`.
RECORD = '''
import json, os, sys, uuid
def record(job):
    os.makedirs("records", exist_ok=True)
    with open(os.path.join("records", uuid.uuid4().hex + ".json"), "w") as f:
        json.dump({"input": job}, f)
'''
# X.inp -> X.out: the lines that are not comments, upper-cased; FAIL in the input fails it.
SIM = RECORD + '''
src = sys.argv[1]
text = open(src, encoding="utf-8").read()
record("sim:" + src)
if "FAIL" in text:
    open(src[:-4] + ".out", "w").write("partial")
    sys.exit(3)
lines = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
open(src[:-4] + ".out", "w", encoding="utf-8").write("".join(lines).upper())
'''
# X.out -> X.sum: how long the result is (so different results can give the same sum).
POST = RECORD + '''
src, out = sys.argv[1], sys.argv[2]
record("post:" + src)
open(out, "w", encoding="utf-8").write(f"{len(open(src, encoding='utf-8').read())}\\n")
'''
# summary.csv over every X.sum: named on the command line, or listed in a file (--list F).
GATHER = RECORD + '''
out, rest = sys.argv[1], sys.argv[2:]
record("summary")
if rest[:1] == ["--list"]:
    rest = open(rest[1], encoding="utf-8").read().splitlines()
with open(out, "w", encoding="utf-8") as f:
    f.writelines(f"{path},{open(path, encoding='utf-8').read()}" for path in rest)
'''
PIPELINE = '''
[rules.sim]
inputs = ["data/*.inp"]
command = "{python} sim.py {input}"
outputs = ["{stem}.out"]

[rules.post]
inputs = ["data/*.out"]
command = "{python} post.py {input} {output}"
outputs = ["{stem}.sum"]

[rules.summary]
gather = true
inputs = ["data/*.sum"]
command = "{python} gather.py {output} {inputs}"
outputs = ["summary.csv"]
'''


@pytest.fixture
def pipeline(project):
    """sim (data/X.inp -> X.out) -> post (X.out -> X.sum) -> summary (every X.sum), on a, b, c."""
    project.write("sim.py", SIM)
    project.write("post.py", POST)
    project.write("gather.py", GATHER)
    project.write("incrun.toml", PIPELINE)
    for name, text in (("a", "x = 1\n"), ("b", "x = 22\n"), ("c", "x = 333\n")):
        project.write(f"data/{name}.inp", text)
    return project


def summary(project) -> str:
    return (project.root / "summary.csv").read_text(encoding="utf-8")


def all_stages(*names: str) -> list[str]:
    return sorted([*(f"sim:data/{n}.inp" for n in names), *(f"post:data/{n}.out" for n in names),
                   "summary"])


# -- chaining ----------------------------------------------------------------------


def test_one_run_from_clean_builds_every_stage_and_the_next_does_nothing(pipeline):
    result = pipeline.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert pipeline.ran() == all_stages("a", "b", "c")
    assert summary(pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"
    assert "7 ran — all succeeded" in result.stdout
    again = pipeline.run()
    assert again.returncode == 0 and "all 7 jobs up to date" in again.stdout
    assert pipeline.ran() == []


def test_a_changed_input_reruns_its_chain_and_the_gather_in_the_same_run(pipeline):
    pipeline.run()
    pipeline.ran()
    pipeline.write("data/b.inp", "x = 2222\n")
    result = pipeline.run()
    assert result.returncode == 0
    assert pipeline.ran() == ["post:data/b.out", "sim:data/b.inp", "summary"]
    assert summary(pipeline) == "data/a.sum,6\ndata/b.sum,9\ndata/c.sum,8\n"
    assert "3 ran, 4 up to date" in result.stdout
    assert "all 7 jobs up to date" in pipeline.run().stdout


def test_an_upstream_job_that_writes_the_same_bytes_stops_the_chain_there(pipeline):
    pipeline.run()
    pipeline.ran()
    pipeline.write("data/b.inp", "# a comment the simulator skips\nx = 22\n")
    assert pipeline.run().returncode == 0
    assert pipeline.ran() == ["sim:data/b.inp"]  # b.out is byte-identical: post:b never runs
    pipeline.write("data/b.inp", "y = 99\n")  # a new b.out, of the same length: the same b.sum
    assert pipeline.run().returncode == 0
    assert pipeline.ran() == ["post:data/b.out", "sim:data/b.inp"]


def test_a_failed_job_stops_its_own_chain_and_the_next_run_carries_on_from_it(pipeline):
    pipeline.write("data/b.inp", "FAIL\n")
    result = pipeline.run()
    assert result.returncode == 1
    assert pipeline.ran() == ["post:data/a.out", "post:data/c.out", "sim:data/a.inp",
                              "sim:data/b.inp", "sim:data/c.inp"]
    assert not (pipeline.root / "summary.csv").exists()
    assert "5 ran (1 failed), 2 not run" in result.stdout
    assert "not run: post:data/b.out, summary (needs sim:data/b.inp, which failed)" \
        in result.stdout.splitlines()
    assert not (pipeline.root / "data" / "b.out").exists()  # a failed job leaves no output
    pipeline.write("data/b.inp", "x = 22\n")
    fixed = pipeline.run()
    assert fixed.returncode == 0
    assert pipeline.ran() == ["post:data/b.out", "sim:data/b.inp", "summary"]
    assert summary(pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"


def test_jobs_not_run_are_reported_with_the_failure_they_need_in_json_and_junit(pipeline):
    pipeline.write("data/b.inp", "FAIL\n")
    result = pipeline.run("--json", "--junit", "report.xml")
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    not_run = {event["name"]: event["detail"] for event in events
               if event["event"] == "job_skipped" and event["reason"] == "not-run"}
    needs = "needs sim:data/b.inp, which failed"
    assert not_run == {"post:data/b.out": needs, "summary": needs}
    junit = (pipeline.root / "report.xml").read_text()
    assert f'name="summary" time="0.000">\n      <skipped message="not run: {needs}"' in junit


def test_a_deleted_intermediate_is_made_again_and_nothing_after_it_reruns(pipeline):
    pipeline.run()
    pipeline.ran()
    (pipeline.root / "data" / "b.out").unlink()
    assert pipeline.run().returncode == 0
    assert pipeline.ran() == ["sim:data/b.inp"]  # the same b.out again: post:b is up to date
    assert (pipeline.root / "data" / "b.out").read_text() == "X = 22\n"


# -- gather rules ------------------------------------------------------------------


def test_a_gather_reruns_when_an_input_is_added_or_removed(pipeline):
    pipeline.run()
    pipeline.ran()
    pipeline.write("data/d.inp", "x = 4\n")
    assert pipeline.run().returncode == 0
    assert pipeline.ran() == all_stages("d")
    assert summary(pipeline).endswith("data/d.sum,6\n")
    for suffix in ("inp", "out", "sum"):
        (pipeline.root / "data" / f"d.{suffix}").unlink()
    assert pipeline.run().returncode == 0
    assert pipeline.ran() == ["summary"]
    assert summary(pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"


def test_a_gather_can_read_its_inputs_from_a_file_written_whole(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace(
        "{output} {inputs}", "{output} --list {inputs_file}"))
    assert pipeline.run().returncode == 0
    assert summary(pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"
    listed = pipeline.root / ".incrun" / "inputs" / "summary.txt"
    assert listed.read_text() == "data/a.sum\ndata/b.sum\ndata/c.sum\n"
    assert [path.name for path in listed.parent.iterdir()] == ["summary.txt"]  # no temporaries


def test_inputs_expand_to_one_word_each_even_with_spaces(pipeline):
    pipeline.write("data/with space.inp", "x = 4\n")
    assert pipeline.run().returncode == 0
    assert "data/with space.sum,6\n" in summary(pipeline)


# -- rule settings -----------------------------------------------------------------


FLAKY = '''
import os, sys
marker = sys.argv[1] + ".tried"
if not os.path.exists(marker):  # fails its first attempt, succeeds on the second
    open(marker, "w").close()
    sys.exit(1)
open(sys.argv[1][:-4] + ".out", "w").write("ok")
'''


def test_a_rule_has_its_own_retries(project):
    project.write("flaky.py", FLAKY)
    project.write("incrun.toml", '''
[rules.patient]
inputs = ["p/*.inp"]
command = "{python} flaky.py {input}"
retries = 1

[rules.strict]
inputs = ["s/*.inp"]
command = "{python} flaky.py {input}"
''')
    project.inputs("p/a.inp", "s/a.inp")
    result = project.run()
    assert result.returncode == 1
    assert (project.root / "p" / "a.out").exists()
    assert not (project.root / "s" / "a.out").exists()
    assert "patient:p/a.inp succeeded on attempt 2" in result.stdout
    assert "FAILED strict:s/a.inp (exit code 1)" in result.stdout


def test_state_made_by_the_single_rule_form_carries_over_to_a_named_rule(project):
    single = 'inputs = ["*.inp"]\ncommand = "{python} runner.py {input}"\n'
    project.write("incrun.toml", single)
    project.inputs("a.inp", "b.inp")
    assert project.run().returncode == 0
    project.ran()
    project.write("incrun.toml", "[rules.sweep]\n" + single)
    result = project.run()
    assert result.returncode == 0 and "all 2 jobs up to date" in result.stdout
    assert project.ran() == []


def test_a_no_op_pipeline_run_never_loads_doit(pipeline):
    pipeline.run()
    result = pipeline.run(env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and "all 7 jobs up to date" in result.stdout
    assert "import time:" in result.stderr and HEAVY_IMPORT.findall(result.stderr) == []


# -- bad plans: one line, a hint, before anything runs ------------------------------


def refused(project, code: int) -> str:
    result = project.run()
    assert result.returncode == code, result.stdout + result.stderr
    assert project.ran() == [] and not (project.root / ".incrun" / "logs").exists()
    return result.stderr


def test_mixing_the_single_rule_and_named_rules_is_refused(pipeline):
    pipeline.write("incrun.toml", 'inputs = ["*.inp"]\n' + PIPELINE)
    error = refused(pipeline, 5)
    assert "[rules.sweep]" in error and "hint:" in error


def test_a_cycle_between_rules_is_refused_and_named(project):
    project.write("incrun.toml", '''
[rules.there]
inputs = ["*.a"]
command = "cp {input} {output}"
outputs = ["{stem}.b"]

[rules.back]
inputs = ["*.b"]
command = "cp {input} {output}"
outputs = ["{stem}.a"]
''')
    project.inputs("x.a")
    error = refused(project, 5)
    assert re.search(r"the rules make a cycle: (there -> back -> there|back -> there -> back)",
                     error), error


def test_an_output_two_jobs_claim_is_refused_naming_both(project):
    project.write("incrun.toml", '''
inputs = ["params/**/*.yml"]
command = "{python} runner.py {input}"
outputs = ["out/{/.}.h5"]
''')
    project.inputs("params/a/run1.yml", "params/b/run1.yml")
    error = refused(project, 5)
    assert "out/run1.h5" in error
    assert "sweep:params/a/run1.yml" in error and "sweep:params/b/run1.yml" in error
    assert "{dir}" in error


def test_a_rule_with_nothing_to_do_is_named(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace('"data/*.sum"', '"data/*.csv"'))
    error = refused(pipeline, 4)
    assert "rule 'summary'" in error and "data/*.csv" in error


@pytest.mark.parametrize("command, says", [
    ("{python} gather.py {output} {input}", "{input}"),
    ("{python} gather.py {output} x{inputs}", "{inputs}"),
])
def test_a_gather_command_must_not_use_one_input(pipeline, command, says):
    pipeline.write("incrun.toml", PIPELINE.replace("{python} gather.py {output} {inputs}",
                                                   command))
    error = refused(pipeline, 5)
    assert says in error and "summary" in error


def test_inputs_are_for_gather_rules_only(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace("{input} {output}", "{inputs} {output}"))
    error = refused(pipeline, 5)
    assert "{inputs}" in error and "gather" in error


def test_a_bad_rule_name_is_refused(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace("[rules.post]", '[rules."po st"]'))
    error = refused(pipeline, 5)
    assert "po st" in error


def test_outputs_of_a_gather_are_plain_paths(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace('["summary.csv"]', '["{stem}.csv"]'))
    assert "{stem}" in refused(pipeline, 5)


def test_nothing_half_written_is_left_by_the_inputs_file(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace(
        "{output} {inputs}", "{output} --list {inputs_file}"))
    pipeline.run()
    folder = pipeline.root / ".incrun" / "inputs"
    assert not [name for name in os.listdir(folder) if name.endswith(".incomplete")]


# -- named wildcards ----------------------------------------------------------------

# Copies its input and its sample's settings into the output, and says which sample it is.
COMBINE = RECORD + '''
src, settings, out, sample = sys.argv[1:]
record(src)
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w", encoding="utf-8") as f:
    f.write(sample + ":" + open(src).read() + open(settings).read())
'''
WILDCARDS = '''
inputs = ["raw/{sample}/{run}.yml"]
command = "{python} combine.py {input} settings/{sample}.txt {output} {sample}"
outputs = ["out/{sample}-{run}.h5"]
deps = ["settings/{sample}.txt"]
'''


@pytest.fixture
def samples(project):
    """raw/a/run1.yml, raw/a/run2.yml and raw/b/run1.yml, a settings file per sample."""
    project.write("combine.py", COMBINE)
    project.write("incrun.toml", WILDCARDS)
    for rel in ("raw/a/run1.yml", "raw/a/run2.yml", "raw/b/run1.yml"):
        project.write(rel, rel + "\n")
    project.write("settings/a.txt", "A\n")
    project.write("settings/b.txt", "B\n")
    return project


def test_named_wildcards_bind_outputs_command_and_deps_of_each_job(samples):
    result = samples.run()
    assert result.returncode == 0, result.stderr
    out = samples.root / "out"
    assert sorted(os.listdir(out)) == ["a-run1.h5", "a-run2.h5", "b-run1.h5"]
    assert (out / "b-run1.h5").read_text() == "b:raw/b/run1.yml\nB\n"
    samples.ran()
    samples.write("settings/b.txt", "B2\n")  # one sample's own dep: only its jobs rerun
    assert samples.run().returncode == 0
    assert samples.ran() == ["raw/b/run1.yml"]
    assert (out / "b-run1.h5").read_text() == "b:raw/b/run1.yml\nB2\n"
    assert "all 3 jobs up to date" in samples.run().stdout


def test_a_wildcard_matches_within_one_path_segment(samples):
    samples.write("raw/a/deeper/run3.yml", "not a run of sample a\n")
    samples.write("raw/top.yml", "no sample\n")
    assert samples.run().returncode == 0
    assert sorted(os.listdir(samples.root / "out")) == ["a-run1.h5", "a-run2.h5", "b-run1.h5"]


def test_the_placeholders_keep_working_beside_wildcards(samples):
    samples.write("incrun.toml", WILDCARDS.replace("out/{sample}-{run}.h5",
                                                   "out/{sample}/{/.}.h5"))
    assert samples.run().returncode == 0
    assert (samples.root / "out" / "a" / "run2.h5").read_text() == "a:raw/a/run2.yml\nA\n"


def test_the_readme_example_with_two_runs_of_one_name_works_with_a_wildcard(project):
    project.write("incrun.toml", '''
inputs = ["params/{group}/*.yml"]
command = "{python} runner.py {input}"
outputs = ["out/{group}-{/.}.h5"]
''')
    project.write("runner.py", RECORD + '''
src = sys.argv[1]
record(src)
group, name = src.split("/")[1], os.path.basename(src)[:-4]
os.makedirs("out", exist_ok=True)
open(f"out/{group}-{name}.h5", "w").write(src)
''')
    project.inputs("params/a/run1.yml", "params/b/run1.yml")
    assert project.run().returncode == 0
    assert (project.root / "out" / "b-run1.h5").read_text() == "params/b/run1.yml"


@pytest.mark.parametrize("change, says", [
    (("out/{sample}-{run}.h5", "out/{sampel}-{run}.h5"), "unknown wildcard {sampel}"),
    (("settings/{sample}.txt\"]", "settings/{who}.txt\"]"), "unknown wildcard {who}"),
    (("raw/{sample}/{run}.yml", "raw/{name}/{run}.yml"), "{name}"),
])
def test_a_wildcard_the_inputs_do_not_bind_is_refused(samples, change, says):
    samples.write("incrun.toml", WILDCARDS.replace(*change))
    error = refused(samples, 5)
    assert says in error and "hint:" in error


def test_a_missing_dep_named_after_a_wildcard_is_refused(samples):
    (samples.root / "settings" / "b.txt").unlink()
    error = refused(samples, 5)
    assert "settings/b.txt" in error and "sweep:raw/b/run1.yml" in error


# -- a rule's own limit -------------------------------------------------------------

# Runs for a while, watching how many jobs run (markers in `running/`), all and of its rule.
WATCHED = RECORD + '''
import glob, time
src, rule = sys.argv[1], sys.argv[2]
os.makedirs("running", exist_ok=True)
marker = os.path.join("running", rule + "." + uuid.uuid4().hex)
open(marker, "w").close()
most_all = most_rule = 0
for _ in range(40):
    running = os.listdir("running")
    most_all = max(most_all, len(running))
    most_rule = max(most_rule, sum(name.startswith(rule + ".") for name in running))
    time.sleep(0.01)
os.remove(marker)
os.makedirs("watch", exist_ok=True)
with open(os.path.join("watch", uuid.uuid4().hex), "w") as f:
    json.dump({"rule": rule, "all": most_all, "rule_max": most_rule}, f)
open(src + ".done", "w").close()
'''


def test_a_rule_limit_holds_exactly_while_other_rules_fill_the_slots(project):
    project.write("watched.py", WATCHED)
    project.write("incrun.toml", '''
[rules.licensed]
inputs = ["*.big"]
command = "{python} watched.py {input} licensed"
outputs = ["{input}.done"]
jobs = 1

[rules.free]
inputs = ["*.small"]
command = "{python} watched.py {input} free"
outputs = ["{input}.done"]
''')
    project.inputs(*(f"b{i}.big" for i in range(4)), *(f"s{i}.small" for i in range(8)))
    result = project.run("-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = [json.loads(path.read_text()) for path in (project.root / "watch").iterdir()]
    licensed = [entry for entry in seen if entry["rule"] == "licensed"]
    assert len(licensed) == 4 and max(entry["rule_max"] for entry in licensed) == 1
    assert max(entry["all"] for entry in licensed) == 3  # the other two slots were busy


def test_a_rule_limit_must_be_a_positive_count(pipeline):
    pipeline.write("incrun.toml", PIPELINE.replace("[rules.post]\n", "[rules.post]\njobs = 0\n"))
    error = refused(pipeline, 5)
    assert "jobs" in error and "post" in error


# -- asking for a target ------------------------------------------------------------


def test_asking_for_a_final_file_builds_only_what_it_needs(pipeline):
    result = pipeline.run("data/a.sum")
    assert result.returncode == 0, result.stderr
    assert pipeline.ran() == ["post:data/a.out", "sim:data/a.inp"]
    assert not (pipeline.root / "data" / "b.out").exists()
    assert pipeline.run("summary.csv").returncode == 0
    assert pipeline.ran() == ["post:data/b.out", "post:data/c.out", "sim:data/b.inp",
                              "sim:data/c.inp", "summary"]


def test_asking_for_a_rule_runs_its_stale_jobs_and_what_they_need(pipeline):
    assert pipeline.run("post").returncode == 0
    assert pipeline.ran() == all_stages("a", "b", "c")[:-1]  # not the gather
    pipeline.write("data/c.inp", "x = 4\n")
    assert pipeline.run("post").returncode == 0
    assert pipeline.ran() == ["post:data/c.out", "sim:data/c.inp"]


def test_asking_for_a_folder_runs_the_jobs_of_the_inputs_there(pipeline):
    pipeline.write("data/more/d.inp", "x = 5\n")
    pipeline.write("incrun.toml", PIPELINE.replace('"data/*.inp"', '"data/**/*.inp"')
                   .replace('"data/*.out"', '"data/**/*.out"'))
    assert pipeline.run("data/more/").returncode == 0
    assert pipeline.ran() == ["post:data/more/d.out", "sim:data/more/d.inp"]


# -- dry-run, status and explain see the whole chain ------------------------------------

REPORT_DODO = '''
def task_report():
    """A hand-written task downstream of the rules' jobs."""
    return {"actions": ["cp summary.csv report.txt"], "file_dep": ["summary.csv"],
            "targets": ["report.txt"]}
'''


def test_dry_run_lists_the_whole_chain_in_run_order_and_the_run_does_as_many(pipeline):
    pipeline.write("dodo.py", REPORT_DODO)
    assert pipeline.run().returncode == 0
    pipeline.ran()
    pipeline.write("data/b.inp", "x = 2222\n")
    dry = pipeline.run("--dry-run")
    assert dry.returncode == 0 and pipeline.ran() == []
    assert dry.stdout.splitlines() == [
        "would run 4 of 8 jobs (4 up to date); nothing was run or changed",
        "  sim:data/b.inp   input changed",
        "  post:data/b.out  upstream will rerun: sim:data/b.inp",
        "  summary          upstream will rerun: post:data/b.out",
        "  report           upstream will rerun: summary",
    ]
    result = pipeline.run()
    assert "4 ran, 4 up to date" in result.stdout
    assert (pipeline.root / "report.txt").read_text() == summary(pipeline)


def test_status_and_explain_say_which_upstream_job_makes_a_job_rerun(pipeline):
    pipeline.run()
    pipeline.write("data/c.inp", "x = 3\n")
    status = pipeline.run("status", "--json")
    report = json.loads(status.stdout)
    assert report["counts"] == {"up_to_date": 4, "stale": 3, "failed": 0, "running": 0,
                                 "ignored": 0}
    stale = [(job["task"], job["kind"]) for job in report["jobs"] if job["state"] == "stale"]
    assert stale == [("sim:data/c.inp", "input-changed"), ("post:data/c.out", "upstream"),
                     ("summary", "upstream")]
    explained = pipeline.run("explain", "data/c.sum").stdout
    assert "post:data/c.out: stale: upstream will rerun: sim:data/c.inp" in explained


# -- dodo.py rules chain the same way ---------------------------------------------------

CHAIN_DODO = '''
from incrun import Rule

sim = Rule(name="sim", inputs=["data/*.inp"], command=["{python}", "sim.py", "{input}"])
post = Rule(name="post", inputs=POST_INPUTS, command=["{python}", "post.py", "{input}",
            "{output}"], outputs=["{stem}.sum"])
summary = Rule(name="summary", inputs=post, gather=True, outputs=["summary.csv"],
               command=["{python}", "gather.py", "{output}", "{inputs}"])


def task_sim():
    yield from sim.tasks()


def task_post():
    yield from post.tasks()


def task_summary():
    yield from summary.tasks()
'''


@pytest.fixture(params=["sim", '["data/*.out"]'])
def dodo_pipeline(pipeline, request):
    """The pipeline as dodo.py rules: post reads `sim` itself, or a pattern of its outputs."""
    (pipeline.root / "incrun.toml").unlink()
    pipeline.write("dodo.py", CHAIN_DODO.replace("POST_INPUTS", request.param))
    return pipeline


def test_dodo_rules_chain_in_one_run_under_incrun(dodo_pipeline):
    result = dodo_pipeline.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert dodo_pipeline.ran() == all_stages("a", "b", "c")
    assert summary(dodo_pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"
    dodo_pipeline.write("data/a.inp", "x = 1111\n")
    assert dodo_pipeline.run().returncode == 0
    assert dodo_pipeline.ran() == ["post:data/a.out", "sim:data/a.inp", "summary"]
    assert "all 7 jobs up to date" in dodo_pipeline.run().stdout


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_dodo_rules_chain_in_one_run_under_plain_doit(dodo_pipeline, workers):
    doit = [sys.executable, "-m", "doit"]
    def run(*args):
        return subprocess.run([*doit, *args], cwd=dodo_pipeline.root, capture_output=True,
                              text=True, timeout=120, env=incrun_env())
    result = run(*workers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dodo_pipeline.ran() == all_stages("a", "b", "c")
    assert summary(dodo_pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,8\n"
    dodo_pipeline.write("data/c.inp", "x = 3\n")
    assert run(*workers).returncode == 0
    assert dodo_pipeline.ran() == ["post:data/c.out", "sim:data/c.inp", "summary"]
    assert summary(dodo_pipeline) == "data/a.sum,6\ndata/b.sum,7\ndata/c.sum,6\n"
    assert run("clean").returncode == 0
    left = sorted(os.listdir(dodo_pipeline.root / "data"))
    assert left == ["a.inp", "b.inp", "c.inp"] and not (dodo_pipeline.root / "summary.csv").exists()


# -- the graph ------------------------------------------------------------------------


def test_graph_prints_the_rules_with_job_and_stale_counts_as_dot(pipeline):
    pipeline.write("dodo.py", REPORT_DODO)
    pipeline.run()
    pipeline.ran()
    pipeline.write("data/a.inp", "x = 1111\n")
    result = pipeline.run("graph")
    assert result.returncode == 0, result.stderr
    dot = result.stdout
    assert dot.startswith("digraph incrun {") and dot.rstrip().endswith("}")
    assert '"sim" [label="sim\\n3 jobs, 1 stale", shape=box' in dot
    assert '"post" [label="post\\n3 jobs, 1 stale"' in dot
    assert '"summary" [label="summary\\ngather, 1 stale", shape=invtrapezium' in dot
    assert '"report" [label="report\\ntask, 1 stale", shape=note' in dot
    edges = re.findall(r'^  "(\S+)" -> "(\S+)";$', dot, re.MULTILINE)
    assert edges == [("sim", "post"), ("post", "summary"), ("summary", "report")]
    assert pipeline.ran() == []


def test_graph_as_mermaid_and_per_job(pipeline):
    mermaid = pipeline.run("graph", "--format", "mermaid").stdout.splitlines()
    assert mermaid[0] == "flowchart LR"
    assert '  n0("sim<br/>3 jobs, 3 stale")' in mermaid and "  n1 --> n2" in mermaid
    jobs = pipeline.run("graph", "--jobs").stdout
    edges = set(re.findall(r'^  "(\S+)" -> "(\S+)";$', jobs, re.MULTILINE))
    assert edges == {*((f"sim:data/{n}.inp", f"post:data/{n}.out") for n in "abc"),
                     *((f"post:data/{n}.out", "summary") for n in "abc")}
    assert pipeline.run("--jobs").returncode == 2  # a run needs a number


def test_the_report_draws_the_rule_graph_inline(pipeline):
    from test_e2e_insight import chromium

    pipeline.run()
    assert pipeline.run("report", "--out", "report.html").returncode == 0
    page = (pipeline.root / "report.html").read_text()
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    dom = chromium("--dump-dom", (pipeline.root / "report.html").as_uri()).stdout
    assert dom.count('<g class="node rule done"') == 2
    assert dom.count('<g class="node gather done"') == 1 and dom.count('class="edge"') == 2


def test_the_report_has_a_row_per_rule_with_its_jobs_and_failures(pipeline):
    from test_e2e_insight import chromium

    pipeline.write("data/b.inp", "FAIL\n")
    assert pipeline.run().returncode == 1
    assert pipeline.run("report", "--out", "report.html").returncode == 0
    dom = chromium("--dump-dom", (pipeline.root / "report.html").as_uri()).stdout
    table = dom[dom.index('<table id="rules">'):]
    rows = re.findall(r'<tr class="rule"><td>(\w+)</td><td class="num">(\d+)</td>'
                      r'<td class="num">(\d+)</td>', table[:table.index("</table>")])
    assert rows == [("sim", "3", "1"), ("post", "2", "0")]  # summary never ran: b failed


# -- the display follows the plan -----------------------------------------------------


def test_the_summary_json_and_junit_give_each_rule_its_share(pipeline):
    pipeline.write("data/b.inp", "FAIL\n")
    result = pipeline.run("--junit", "report.xml")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    headline = next(index for index, line in enumerate(lines) if line.startswith("done in"))
    assert lines[headline + 1:headline + 4] == ["  sim      3/3  3 ran (1 failed)",
                                                "  post     3/3  2 ran, 1 not run",
                                                "  summary  1/1  1 not run"]
    suites = ET.parse(pipeline.root / "report.xml").getroot().findall("testsuite")
    assert [(suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("skipped"))
            for suite in suites] == [("sim", "3", "1", "0"), ("post", "3", "0", "1"),
                                     ("summary", "1", "0", "1")]
    pipeline.write("data/b.inp", "x = 22\n")
    events = [json.loads(line) for line in pipeline.run("--json").stdout.splitlines()]
    assert events[0]["rules"] == {"sim": 3, "post": 3, "summary": 1}
    assert events[-1]["rules"]["sim"] == {"total": 3, "succeeded": 1, "failed": 0,
                                          "up_to_date": 2, "not_run": 0}


def test_the_live_display_has_a_line_per_rule(pipeline):
    code, screen = pipeline.on_terminal("-n", "2", env={"COLUMNS": "100"})
    assert code == 0
    assert re.search(r"sim +\d/3", screen) and re.search(r"summary +\d/1", screen)


# -- beside make ------------------------------------------------------------------------

# The same chain as make's pattern rules. Every stage's files are named, so make treats none as
# an intermediate it may skip or delete; a failed job's output is deleted, as incrun does.
MAKEFILE = '''
OUTS := $(patsubst %.inp,%.out,$(wildcard data/*.inp))
SUMS := $(OUTS:.out=.sum)
summary.csv: $(SUMS)
\t{python} gather.py $@ $^
data/%.sum: data/%.out
\t{python} post.py $< $@
data/%.out: data/%.inp
\t{python} sim.py $<
stages: $(OUTS) $(SUMS)
.PHONY: stages
.DELETE_ON_ERROR:
'''


def made_files(root) -> dict[str, str]:
    """Every output of the chain, by path, with its content."""
    found = {path.relative_to(root).as_posix(): path.read_text()
             for pattern in ("data/*.out", "data/*.sum", "summary.csv")
             for path in root.glob(pattern)}
    return dict(sorted(found.items()))


@pytest.mark.skipif(shutil.which("make") is None, reason="no GNU make here")
def test_the_pipeline_leaves_what_make_j2_leaves_at_every_step(pipeline, tmp_path):
    beside = tmp_path / "make"
    shutil.copytree(pipeline.root, beside)
    (beside / "incrun.toml").unlink()
    (beside / "Makefile").write_text(MAKEFILE.replace("{python}", sys.executable))

    def both(*targets: str, make_ok: bool = True, incrun_code: int = 0) -> None:
        made = subprocess.run(["make", "-k", "-j2", *targets], cwd=beside, capture_output=True,
                              text=True, timeout=120)
        assert (made.returncode == 0) == make_ok, made.stdout + made.stderr
        result = pipeline.run("-n", "2", *targets)
        assert result.returncode == incrun_code, result.stdout + result.stderr
        assert made_files(pipeline.root) == made_files(beside)

    def change(rel: str, text: str) -> None:
        for root in (pipeline.root, beside):
            (root / rel).write_text(text)
            os.utime(root / rel, (time.time() + 2, time.time() + 2))  # newer, for make

    both("summary.csv")  # first run
    change("data/b.inp", "x = 2222\n")
    both("summary.csv")  # a changed input
    for root in (pipeline.root, beside):
        (root / "data" / "c.out").unlink()
    both("summary.csv")  # a deleted intermediate
    change("data/a.inp", "FAIL\n")
    both("summary.csv", make_ok=False, incrun_code=1)  # a failed stage-1 job
    change("data/a.inp", "x = 1\n")
    for root in (pipeline.root, beside):
        for made in made_files(root):
            (root / made).unlink()
    both("data/b.sum")  # one final target
    assert sorted(made_files(beside)) == ["data/b.out", "data/b.sum"]
