"""PeriodicSAM: SAM every k steps, the base optimizer otherwise (SAM-5 / SAM-10 of vsam.txt Table 3)."""
from .engine import check_arg
from .sam import SAM


class PeriodicSAM(SAM):
    """SAM on steps 0, k, 2k, ...; a plain base-optimizer step on the others.

    Buffers: 1 weight-sized (as SAM).
    """

    def __init__(self, params, base_optimizer, rho=0.05, k=5, **kwargs):
        check_arg("k", k, isinstance(k, int) and not isinstance(k, bool) and k >= 1,
                  "an int >= 1")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.k = k

    def _gradient(self, closure):
        self.stats.update(sampled=self.iteration % self.k == 0, sampling_rate=1.0 / self.k)
        if self.stats["sampled"]:
            return super()._gradient(closure)
        return self._pass(closure).mean()
