"""Kernels written, tested and measured but called by no op: ``bernoulli`` (summed Bernoulli
log-likelihood), ``logsumexp`` (row-wise, for the IWAE) and ``gaussian`` (reparameterise + KL). Why each is
not routed, with the measurements: README.md in this folder."""
