"""Trainers of the in-repo codecs: ``template`` (the one training run), ``config`` (its frozen settings),
``data`` and ``overlap`` (the training files and their checks), ``loop``, ``losses`` and
``discriminators`` (shared pieces), and one module per model (``dac``, ``vrvq``, ``eulerodec``)."""
