"""Smoke tests of the benchmark scripts (benchmarks/run.py): tiny sizes, one run, no timing checked —
speed is measured by hand (docs/benchmarks.md), never by a test."""
import json
import pathlib
import subprocess
import sys

RUN = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'run.py'


def test_run_py_prints_one_json_line_per_workload():
  out = subprocess.run([sys.executable, str(RUN), '--workload', 'jpeg', '--workload', 'degrade', '--batch', '2',
                        '--lr-size', '16', '--hr-size', '32', '--ksize', '7', '--warmup', '1', '--runs', '1'],
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  assert [r['workload'] for r in rows] == ['jpeg', 'degrade']
  assert all(r['ms'] > 0 for r in rows) and rows[0]['pillow_ms'] > 0
  assert rows[1]['lr_shape'] == [2, 8, 8, 3]
