"""The base of the pipeline's steps."""

from sklearn.base import BaseEstimator, TransformerMixin


class GradientStep(TransformerMixin, BaseEstimator):
    """A step of the attack pipeline.  There is nothing to learn across gradients: each step maps the
    gradient it is given to its result, so ``fit`` computes that result (keeping fitted attributes) and
    ``transform`` computes it again.  Subclasses implement ``fit_transform``."""

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def transform(self, X):
        return self.fit_transform(X)
