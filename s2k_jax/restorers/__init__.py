"""Kernel-conditioned (non-blind) restorers, one module each (paper §3.4: S2K's kernel goes into one).

Every restorer module has the shape of `sftmd.py` — training (`make_batch_fn`, `create_train_state`,
`train_step`, `eval_step`, `summarize_eval`, `task`) and inference (`load` → `base.Restorer`) — and is
one line in `s2k_jax/tasks.py`. The pipeline, evaluation and CLI only use `base.Restorer`.
"""
