"""Shell completion scripts, generated from the argparse parser (so they never drift from it).

Commands and options complete from the parser; a slice NAME completes from
``slicectl get -o name`` (your slices, through the API).
"""

import argparse

SHELLS = ("bash", "zsh")
# Commands whose first positional argument is a slice name.
NAME_COMMANDS = ("deploy", "redeploy", "destroy", "extend", "inspect", "export", "delete", "plan", "console")

ZSH_PREAMBLE = """# slicectl zsh completion: source <(slicectl completion zsh)
autoload -U +X bashcompinit && bashcompinit
"""
BASH = """# slicectl bash completion: source <(slicectl completion bash)
_slicectl() {
    local cur cmd i
    cur="${COMP_WORDS[COMP_CWORD]}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -*) ;;
            *) cmd="${COMP_WORDS[i]}"; break ;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "%(commands)s %(global)s" -- "$cur"))
        return
    fi
    if [[ "$cur" == -* ]]; then
        case "$cmd" in
%(options)s
        esac
        return
    fi
    case "$cmd" in
        %(name_commands)s)
            COMPREPLY=($(compgen -W "$(slicectl get -o name 2>/dev/null)" -- "$cur")) ;;
        apply)
            COMPREPLY=($(compgen -f -- "$cur")) ;;
        completion)
            COMPREPLY=($(compgen -W "%(shells)s" -- "$cur")) ;;
    esac
}
complete -F _slicectl slicectl
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings]


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (bash; zsh loads it through bashcompinit)."""
    commands = _subcommands(parser)
    options = "\n".join(
        f'            {name}) COMPREPLY=($(compgen -W "{" ".join(_options(sub))}" -- "$cur")) ;;'
        for name, sub in commands.items()
    )
    text = BASH % {
        "commands": " ".join(commands),
        "global": " ".join(o for o in _options(parser) if o.startswith("--")),
        "options": options,
        "name_commands": "|".join(NAME_COMMANDS),
        "shells": " ".join(SHELLS),
    }
    if shell == "zsh":
        return ZSH_PREAMBLE + text
    return text
