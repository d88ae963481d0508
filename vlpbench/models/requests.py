"""Optional encoder outputs that components request: computed only when some component asks.

A hard need is a class attribute ``requires`` checked by ``validate`` (:mod:`vlpbench.config.compat`).
A soft one is ``feature_requests`` on a built component (instance or class attribute: it may depend on
the component's parameters), e.g. ``{"text:cls_attention", "image:cls_attention"}`` for MGCA's
importance weights. After the objective is built, :func:`apply_feature_requests` collects every
request of its modules and hands each side's names to its encoder's ``request_features(names)``,
which switches on what it can give and returns the granted names; what an encoder cannot give
(e.g. attention of a CNN) is simply absent (the feature field stays None) and the component falls
back to what the official code does without it. Encoders list what can be requested in
``optional_features``.

Requestable today:

| request | built-in encoder | feature field |
|---|---|---|
| ``text:cls_attention`` | ``bert``: last layer, [CLS] → every token, mean over heads | ``TextFeatures.cls_attention`` [B, M] |
| ``image:cls_attention`` | ``timm`` ViT: last block, class token → every patch, mean over heads (a CNN: none) | ``ImageFeatures.cls_attention`` [B, N] |
"""

from __future__ import annotations

from torch import nn

from vlpbench.core.capabilities import GrantsFeatures, declared, offers


SIDES = ("image", "text")


def collect_requests(*modules: nn.Module) -> dict[str, set[str]]:
    """Every ``feature_requests`` of the modules (and their submodules), by side."""
    wanted: dict[str, set[str]] = {side: set() for side in SIDES}
    for root in modules:
        for module in root.modules():
            for request in declared(module, "feature_requests") or ():
                side, _, name = request.partition(":")
                if side not in wanted or not name:
                    raise ValueError(f"{type(module).__name__}.feature_requests: '{request}' is not "
                                     "'image:<name>' or 'text:<name>'")
                wanted[side].add(name)
    return wanted


def apply_feature_requests(objective: nn.Module, image_encoder: nn.Module, text_encoder: nn.Module) -> dict[str, set[str]]:
    """Switch on what the objective's components request; returns what each encoder granted."""
    wanted = collect_requests(objective)
    granted: dict[str, set[str]] = {}
    for side, encoder in (("image", image_encoder), ("text", text_encoder)):
        request = encoder.request_features if offers(encoder, GrantsFeatures) else None
        granted[side] = set(request(wanted[side])) if (wanted[side] and request is not None) else set()
    return granted
