"""Foundation helpers imported by every other package and importing none of them.

``schedules`` (cosine and temperature schedules), ``distributed`` (torchrun context, guarded
collectives), ``files`` (atomic writes), ``checkpoint`` (atomic ``torch.save`` and safe loads),
``environment`` (device, versions and commit for benchmark records), ``stop`` (SIGTERM as a
request to stop after the step, with a checkpoint) and ``typed_yaml`` (typed
dataclasses from YAML with ``--set`` overrides).
"""
