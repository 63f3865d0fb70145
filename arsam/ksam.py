"""K-SAM (ksam.txt, Algorithm 1): SAM's two gradients on the top-k loss samples only."""
from .engine import SharpnessAwareOptimizer, check_arg, check_fraction_or_count, subset_size


class KSAM(SharpnessAwareOptimizer):
    """K-SAM.

    Each step: a no-grad forward on the whole batch gives the losses l = L_B(w); the ascent
    gradient is taken on the K1 samples of highest loss, ε = ρ·∇L_{M_K1}(w)/‖∇L_{M_K1}(w)‖, and the
    update gradient on the K2 samples of highest loss at w+ε, ∇L_{M_K2}(w)|_{w+ε}.

    Args:
        k1, k2: subset sizes, an int or a fraction of the batch (paper: B/8 and B/2).
        k2_halve_at: K-SAM*: from this step on, K2 is halved (the paper decays K2 midway
            through training); None keeps K2 fixed.

    The closure must return per-sample losses. Buffers: 1 weight-sized (the copy of w).
    """

    #: sizes checked against the data's smallest batch before training (check_batch_size)
    subset_args = ("k1", "k2")
    needs_per_sample_losses = True

    def __init__(self, params, base_optimizer, rho=0.05, k1=0.125, k2=0.5, k2_halve_at=None,
                 **kwargs):
        check_fraction_or_count("k1", k1)
        check_fraction_or_count("k2", k2)
        check_arg("k2_halve_at", k2_halve_at, k2_halve_at is None or (
            isinstance(k2_halve_at, int) and k2_halve_at >= 0), "None or an int >= 0")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.k1, self.k2, self.k2_halve_at = k1, k2, k2_halve_at

    def _gradient(self, closure):
        losses = self._pass(closure, backward=False, per_sample=True)  # l = L_B(w)
        n = len(losses)
        k1 = subset_size("k1", self.k1, n)
        k2 = subset_size("k2", self.k2, n)
        if self.k2_halve_at is not None and self.iteration >= self.k2_halve_at:
            k2 = max(1, k2 // 2)
        top = losses.topk(max(k1, k2)).indices
        self._pass(closure, None if k1 == n else top[:k1], ascent=True)
        self._perturb()
        self._pass(closure, None if k2 == n else top[:k2])
        self._restore()
        return losses.mean()
