#!/usr/bin/env bash
# Creates bench/.venv with the pinned PyTorch reference dependencies.
#   bench/setup.sh            # then: bench/.venv/bin/python bench/compare.py
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --upgrade pip >/dev/null
.venv/bin/pip install -r requirements.txt
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
