"""Metrics: one module per metric, each registering a :class:`~bench.metrics.base.MetricSpec`.

``DEFAULT_METRICS`` lives here (not in ``base``) so that the command line can show it without
importing torch.
"""

#: metrics run by default: fast, reference-based, meaningful for every codec. The model-backed
#: metrics (visqol, wer/cer, dnsmos) are slower; ask for them with --metrics or --metrics all.
DEFAULT_METRICS = ("si_sdr", "mel_distance", "stft_distance", "lsd", "gdd", "pesq_wb", "pesq_nb", "stoi", "estoi")
