"""memwatch inside training frameworks: Lightning, the transformers Trainer, accelerate.

Each module imports its framework only when it is imported itself, so ``import memwatch``
never needs them (``pip install 'memwatch[frameworks]'`` installs the three):

* ``memwatch.integrations.lightning.MemwatchCallback`` (a Lightning ``Callback``);
* ``memwatch.integrations.transformers.MemwatchCallback`` (a ``TrainerCallback``);
* ``memwatch.integrations.accelerate.watch_accelerator`` (a watch for a hand-written
  accelerate loop, stepping with the accelerator's gradient synchronisation).

All three are thin: ``FrameworkWatch`` (in ``memwatch.integrations.framework``) turns the
framework's step counter and phases into a memwatch run, and the framework module only
says where those come from.
"""
