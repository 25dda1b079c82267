"""An MLP regressor on scikit-learn's bundled diabetes data (the regression sample).

Input `features` float32 [batch, 10] (standardized by data.py); output one tensor [batch, 1]:
the disease-progression score in the dataset's own units. Factory for dlopt:
`models/diabetes_mlp/model.py:create_model`.
"""

from __future__ import annotations

from torch import nn

DLOPT_INPUTS = ["features:batch=1x10"]
# The target's training-split mean and spread, so the net predicts a standardized value.
TARGET_MEAN = 152.0
TARGET_SCALE = 77.0


class DiabetesMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    def forward(self, features):  # type: ignore[no-untyped-def]
        return self.body(features) * TARGET_SCALE + TARGET_MEAN


def create_model() -> nn.Module:
    """The untrained network; load `weights.pt` beside this file with dlopt's --weights."""
    return DiabetesMLP()
