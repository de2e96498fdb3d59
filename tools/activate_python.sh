#!/usr/bin/env bash
# Source this file to put tools/venv on PATH (recipes' path.sh do it for you).
# It builds the venv first when it is missing.
_audiossl_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "${_audiossl_tools}/venv/.done" ]; then
    "${_audiossl_tools}/install.sh" || return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${_audiossl_tools}/venv/bin/activate"
unset _audiossl_tools
