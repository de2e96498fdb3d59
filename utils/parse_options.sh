# shellcheck shell=bash
# Parse Kaldi-style command-line options into the calling script's variables. Source it after the
# defaults and help_message are set:
#
#   nj=4            # number of jobs
#   use_gpu=false   # a boolean: only true or false are accepted
#   help_message="Usage: $0 [--nj N] [--use-gpu true|false] <data-dir>"
#   . utils/parse_options.sh
#   # "$@" now holds the positional arguments
#
# Rules:
#   --foo-bar VALUE or --foo-bar=VALUE sets foo_bar, which must already exist as a variable;
#     an unknown option prints "$0: invalid option --foo-bar" and exits 1.
#   An option whose current value is true or false only accepts true or false.
#   --config FILE is sourced before any other option is applied, so the command line wins over it.
#   --help or -h prints $help_message to stderr and exits 0.
#   Options stop at the first argument that does not start with "--", or after "--".

# 1. --config files first (anywhere in the options), so that options given on the command line win.
_po_args=("$@")
_po_i=0
while [ "${_po_i}" -lt "${#_po_args[@]}" ]; do
    _po_arg=${_po_args[${_po_i}]}
    case ${_po_arg} in
        --) break ;;
        --config | --config=*)
            if [ "${_po_arg}" = --config ]; then
                if [ $((_po_i + 1)) -ge "${#_po_args[@]}" ]; then
                    echo "$0: option --config needs a file name" >&2
                    exit 1
                fi
                _po_config=${_po_args[$((_po_i + 1))]}
                _po_i=$((_po_i + 2))
            else
                _po_config=${_po_arg#--config=}
                _po_i=$((_po_i + 1))
            fi
            if [ ! -f "${_po_config}" ]; then
                echo "$0: config file '${_po_config}' (from --config) does not exist; check the path" >&2
                exit 1
            fi
            # shellcheck disable=SC1090
            . "${_po_config}"
            ;;
        --*=*) _po_i=$((_po_i + 1)) ;;
        --* | -h) _po_i=$((_po_i + 2)) ;;
        *) break ;;
    esac
done

# 2. Every option in order.
while [ $# -gt 0 ]; do
    case $1 in
        --help | -h)
            if [ -n "${help_message:-}" ]; then
                printf '%s\n' "${help_message}" >&2
            else
                echo "$0: no help message; read the options at the top of $0" >&2
            fi
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --*=*)
            _po_opt=${1%%=*}
            _po_value=${1#*=}
            shift
            ;;
        --*)
            _po_opt=$1
            if [ $# -lt 2 ]; then
                echo "$0: option ${_po_opt} needs a value" >&2
                exit 1
            fi
            _po_value=$2
            shift 2
            ;;
        *) break ;;
    esac
    _po_name=${_po_opt#--}
    _po_name=${_po_name//-/_}
    if [ "${_po_name}" = config ]; then
        continue  # already sourced above
    fi
    if ! [[ ${_po_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_name+set}" ]; then
        echo "$0: invalid option ${_po_opt}" >&2
        exit 1
    fi
    case ${!_po_name} in
        true | false)
            if [ "${_po_value}" != true ] && [ "${_po_value}" != false ]; then
                echo "$0: option ${_po_opt} is a boolean: give true or false, not '${_po_value}'" >&2
                exit 1
            fi
            ;;
    esac
    printf -v "${_po_name}" '%s' "${_po_value}"
done

unset _po_args _po_i _po_arg _po_config _po_opt _po_value _po_name
true  # leave $? = 0 for scripts running with set -e
