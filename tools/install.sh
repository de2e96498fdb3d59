#!/usr/bin/env bash
# Build tools/venv: a Python virtualenv with audiossl installed (editable) and its pinned packages.
# Idempotent: a finished venv is left as it is (tools/venv/.done); remove tools/venv to rebuild.
#
# Usage: tools/install.sh [--python python3] [--extras test]
set -euo pipefail

python=python3
extras="test"

while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=$2; shift 2 ;;
        --extras) extras=$2; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "$0: unknown option '$1' (see --help)" >&2; exit 1 ;;
    esac
done

tools_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "${tools_dir}")
venv=${tools_dir}/venv
stamp=${venv}/.done
want="extras=${extras} $(cat "${root}/setup.py" "${tools_dir}/constraints.txt" | cksum)"

if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    echo "$0: ${venv} is up to date"
    exit 0
fi

if ! "${python}" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    echo "$0: ${python} is missing or older than Python 3.10; pass --python /path/to/python3" >&2
    exit 1
fi

echo "$0: building ${venv} (torch is large: a few minutes on first install)"
[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip setuptools wheel -c "${tools_dir}/constraints.txt"
spec="${root}"
[ -n "${extras}" ] && spec="${root}[${extras}]"
"${pip[@]}" install -c "${tools_dir}/constraints.txt" -e "${spec}"
"${venv}/bin/python" -c 'import torch, torchaudio, kaldiio, soundfile; print("torch", torch.__version__, "torchaudio", torchaudio.__version__)'
echo "${want}" > "${stamp}"
echo "$0: done; activate with: . ${tools_dir}/activate_python.sh"
