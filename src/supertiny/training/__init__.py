"""Training the student with TRL: SFT on verified teacher answers, GRPO with the call module's
reward, on-policy distillation from a white-box teacher.

One module a stage (``sft``, ``rl``, ``kd``), each a recipe read top to bottom; ``settings``
checks the ``student`` parameters, ``data`` turns ``distill_train`` rows into TRL datasets with
the shared prompt format, ``monitor`` records what each stage did.
"""
