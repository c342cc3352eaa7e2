"""Helper run by test_export.py in a fresh interpreter: load a spec, run it on the saved
inputs, save the named outputs. Usage: python run_spec_in_fresh_process.py SPEC IN OUT"""

import sys

import torch

from visdet.export import load_spec

spec_path, inputs_path, outputs_path = sys.argv[1:4]
runner = load_spec(spec_path)
cases = torch.load(inputs_path)
torch.save([runner(c["image"], c.get("point")) for c in cases], outputs_path)
