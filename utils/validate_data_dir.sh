#!/usr/bin/env bash
# Check a data directory: runs python3 -m audiossl.bin.validate_data_dir, which prints every
# problem with its file and line. Run it with the project's Python on PATH (. ./path.sh).
set -euo pipefail
export LC_ALL=C

help_message=$(cat <<EOF_HELP
Usage: $0 [--no-labels] [--no-durations] <data-dir>
e.g.: $0 --no-durations data/train
Options:
  --no-labels      do not require utt2label and labels.txt
  --no-durations   do not require utt2dur
EOF_HELP
)

# The options are flags, so they are checked here and handed to the Python module as they are.
num_dirs=0
for arg in "$@"; do
    case ${arg} in
        --help | -h) printf '%s\n' "${help_message}" >&2; exit 0 ;;
        --no-labels | --no-durations) ;;
        --*) echo "$0: invalid option ${arg}" >&2; printf '%s\n' "${help_message}" >&2; exit 1 ;;
        *) num_dirs=$((num_dirs + 1)) ;;
    esac
done
if [ "${num_dirs}" -ne 1 ]; then
    printf '%s\n' "${help_message}" >&2
    exit 1
fi
if ! command -v python3 > /dev/null; then
    echo "$0: python3 not found; source the recipe's path.sh (it puts tools/venv on PATH)" >&2
    exit 1
fi
exec python3 -m audiossl.bin.validate_data_dir "$@"
