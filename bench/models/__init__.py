"""The in-repo neural networks and their checkpoint format.

* Networks: ``dac_model`` (Improved RVQGAN), ``vrvq_model`` (variable-bitrate RVQ on the DAC
  backbone), ``eulerodec_model`` (complex-valued RVQ-VAE on the STFT), with the shared layers
  (``layers``, ``complex``), quantisers (``rvq``, ``complex_rvq``) and code packing (``bitpack``).
* ``checkpoint``: safetensors weights plus a JSON card, written, read and verified (never a pickle).

Codec adapters (``bench.codecs``) and the trainers (``bench.train``) import from here; nothing here
imports either of them.
"""
