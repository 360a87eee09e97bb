"""`incrun tabcompletion`: a completion script for bash (zsh runs the same through its
bashcompinit), made from the commands' own parsers; task names come from `incrun list`."""

from __future__ import annotations

from .commands_help import ALIASES, COMMANDS, command_parser

BASH = """\
# incrun completion for bash: `incrun tabcompletion > FILE`, then `source FILE`
# (or put FILE in ~/.local/share/bash-completion/completions/incrun).
_incrun() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" word opts
    local commands="{commands}"
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " $commands " in *" $word "*) command=$word; break;; esac
    done
    case "$command" in
{cases}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    if [[ "$command" == help ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
    fi
    local names
    names="$(incrun list --all -q 2>/dev/null)"
    [[ -z "$command" ]] && names="$commands $names"
    COMPREPLY=($(compgen -W "$names" -- "$cur") $(compgen -f -- "$cur"))
    if declare -F __ltrim_colon_completions >/dev/null; then
        __ltrim_colon_completions "$cur"  # task names hold ':', a word break to bash
    fi
}}
complete -o filenames -F _incrun incrun
"""

ZSH = """\
#compdef incrun
# incrun completion for zsh: `incrun tabcompletion --shell zsh > ~/.zfunc/_incrun`, with
# ~/.zfunc in $fpath before compinit.
autoload -U +X bashcompinit && bashcompinit
"""


def _options(command: str) -> str:
    return " ".join(option for action in command_parser(command)._actions
                    for option in action.option_strings)


def script(shell: str = "bash") -> str:
    words = [*COMMANDS, *ALIASES]
    cases = "\n".join(f"        {name}) opts=\"{_options(ALIASES.get(name, name))}\";;"
                      for name in words if name != "run")
    cases += f"\n        *) opts=\"{_options('run')}\";;"
    bash = BASH.format(commands=" ".join(words), cases=cases)
    return ZSH + bash if shell == "zsh" else bash
