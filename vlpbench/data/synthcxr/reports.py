"""SynthCXR's reports: a findings and an impression section that say what the image shows.

Templated with synonyms, paraphrases, negations of absent findings, hedging of subtle findings and
laterality that match the image; normal studies reuse a few phrasings, so in a batch many unpaired
reports say the same thing (the false negatives the methods address). :data:`PROMPTS` are the
zero-shot phrasings in the reports' own language. The reports draw from a generator of their own,
so a split whose pixels are already stored draws the same reports without rendering.
"""

from __future__ import annotations

import numpy as np

from vlpbench.data.synthcxr.vocabulary import BILATERAL, FINDINGS, LEFT, LOBES, RIGHT, SIDE_WORD, ZONES


NORMAL_REPORTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("The lungs are clear.", "The cardiomediastinal silhouette is within normal limits.",
      "No pleural effusion or pneumothorax."), ("No acute cardiopulmonary process.",)),
    (("Heart size is normal.", "The lungs are clear without focal consolidation.",
      "There is no pleural effusion or pneumothorax."), ("No acute cardiopulmonary abnormality.",)),
    (("The heart and mediastinum are unremarkable.", "Lungs are clear.",
      "No effusion or pneumothorax is seen."), ("Normal chest radiograph.",)),
)
HEDGE = ("Possible {}.", "Questionable {}.", "{} cannot be excluded.", "Findings may represent {}.")

NEGATIONS = {
    "cardiomegaly": ("Heart size is normal.", "The heart is not enlarged.", "Normal cardiac silhouette."),
    "edema": ("No pulmonary edema.", "No signs of vascular congestion or edema."),
    "pleural_effusion": ("No pleural effusion.", "No effusion is seen."),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax."),
    "consolidation": ("No focal consolidation.", "No airspace consolidation."),
    "nodule": ("No suspicious pulmonary nodule.", "No nodules are identified."),
    "atelectasis": ("No atelectasis.",),
    "support_devices": (),
}
IMPRESSION_NAMES = {
    "cardiomegaly": ("Cardiomegaly.", "Enlarged cardiac silhouette."),
    "edema": ("Pulmonary edema.", "Mild interstitial edema."),
    "pleural_effusion": ("{side} pleural effusion.", "{side} effusion."),
    "pneumothorax": ("{side} apical pneumothorax.", "{side} pneumothorax."),
    "consolidation": ("{side} {lobe} lobe consolidation.", "{side} {lobe} lobe pneumonia is suspected."),
    "nodule": ("{side} {zone} zone pulmonary nodule.", "{side} lung nodule; CT is recommended."),
    "atelectasis": ("{side} basilar atelectasis.", "{side} lower lobe atelectasis."),
    "support_devices": ("Support device in place.", "Lines and tubes as described."),
}


#: Zero-shot prompts per finding: phrasings that assert it and phrasings that deny it, in the
#: reports' own language (the zero-shot task contrasts their mean embeddings).
PROMPTS: dict[str, dict[str, tuple[str, ...]]] = {
    "atelectasis": {"positive": ("There is basilar atelectasis.", "Plate-like atelectasis at the base."),
                    "negative": ("No atelectasis.",)},
    "cardiomegaly": {"positive": ("The heart is enlarged.", "There is cardiomegaly."),
                     "negative": ("Heart size is normal.", "The heart is not enlarged.")},
    "consolidation": {"positive": ("There is consolidation in the lobe.", "Airspace opacity, concerning for pneumonia."),
                      "negative": ("No focal consolidation.", "No airspace consolidation.")},
    "edema": {"positive": ("Pulmonary vascular congestion with interstitial edema.", "Pulmonary edema."),
              "negative": ("No pulmonary edema.", "No signs of vascular congestion or edema.")},
    "pleural_effusion": {"positive": ("There is a pleural effusion.", "Blunting of the costophrenic angle."),
                         "negative": ("No pleural effusion.", "No effusion is seen.")},
    "pneumothorax": {"positive": ("There is an apical pneumothorax.", "Apical pleural line with absent lung markings."),
                     "negative": ("No pneumothorax.", "There is no pneumothorax.")},
    "nodule": {"positive": ("A nodule is seen.", "Pulmonary nodule."),
               "negative": ("No suspicious pulmonary nodule.", "No nodules are identified.")},
    "support_devices": {"positive": ("An endotracheal tube is in place.", "Support lines and tubes are in standard position."),
                        "negative": ("The lungs are clear.", "No acute cardiopulmonary process.")},
}


def _severity_word(value: float, words: tuple[str, str, str] = ("small", "moderate", "large")) -> str:
    return words[min(2, int(value * 3))]


def _finding_sentence(rng: np.random.Generator, finding: str, side: int, severity: float, zone: int) -> tuple[str, str]:
    """A findings-section sentence and the location phrase of one present finding."""
    side_word = SIDE_WORD.get(side, "")
    both = side == BILATERAL
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    if finding == "cardiomegaly":
        word = _severity_word(severity, ("mild", "moderate", "marked"))
        adverb = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[word]
        return pick((f"The heart is {adverb} enlarged.", f"There is {word} cardiomegaly.",
                     "The cardiac silhouette is enlarged.")), "heart"
    if finding == "edema":
        return pick(("There is bilateral perihilar haziness consistent with pulmonary edema.",
                     "Diffuse interstitial opacities suggest pulmonary edema.",
                     "Pulmonary vascular congestion with interstitial edema.")), "bilateral"
    if finding == "pleural_effusion":
        size = _severity_word(severity)
        where = "bilateral" if both else side_word
        place = "bilateral" if both else f"{side_word} base"
        return pick((f"There is a {size} {where} pleural effusion.",
                     f"{'Bilateral' if both else 'A ' + size + ' ' + side_word} pleural effusion{'s are' if both else ' is'} present.",
                     f"Blunting of the {'bilateral' if both else side_word} costophrenic angle{'s' if both else ''} "
                     f"consistent with {'effusions' if both else 'a ' + size + ' effusion'}.")), place
    if finding == "pneumothorax":
        size = _severity_word(severity)
        return pick((f"There is a {size} {side_word} apical pneumothorax.",
                     f"A {size} pneumothorax is seen at the {side_word} apex.",
                     f"{side_word.capitalize()} apical pleural line with absent lung markings, a {size} pneumothorax.")), f"{side_word} apex"
    if finding == "consolidation":
        lobe = LOBES[side][min(zone, len(LOBES[side]) - 1)]
        return pick((f"There is consolidation in the {side_word} {lobe} lobe.",
                     f"Airspace opacity in the {side_word} {lobe} lobe, concerning for pneumonia.",
                     f"Focal {side_word} {lobe} lobe consolidation.")), f"{side_word} {lobe} lobe"
    if finding == "nodule":
        zone_word = ZONES[zone]
        return pick((f"A nodule is seen in the {side_word} {zone_word} zone.",
                     f"There is a rounded opacity in the {side_word} {zone_word} lung, likely a nodule.",
                     f"{side_word.capitalize()} {zone_word} zone pulmonary nodule.")), f"{side_word} {zone_word} zone"
    if finding == "atelectasis":
        return pick((f"Plate-like atelectasis at the {side_word} base.",
                     f"There is {side_word} basilar atelectasis.",
                     f"Linear opacity in the {side_word} lower zone, consistent with atelectasis.")), f"{side_word} base"
    if finding == "support_devices":
        return pick(("An endotracheal tube is in place.", "A central venous catheter is in place with its tip in the SVC.",
                     "Support lines and tubes are in standard position.")), "mediastinum"
    raise AssertionError(finding)


def report(rng: np.random.Generator, labels: np.ndarray, sides: np.ndarray, severity: np.ndarray,
           zone: np.ndarray, difficulty: float) -> tuple[list[str], int, dict[str, str]]:
    """Sentences of one report (findings then impression), the impression start, locations."""
    present = [FINDINGS[k] for k in np.flatnonzero(labels)]
    if not present:
        findings, impression = NORMAL_REPORTS[rng.integers(len(NORMAL_REPORTS))]
        extra = []
        if rng.random() < 0.3:  # a pertinent negative, in one of few wordings
            extra = [("No suspicious pulmonary nodule.", "No acute osseous abnormality.")[rng.integers(2)]]
        return [*findings, *extra, *impression], len(findings) + len(extra), {}
    findings_sentences, impression, locations = [], [], {}
    for finding in present:
        k = FINDINGS.index(finding)
        sentence, where = _finding_sentence(rng, finding, int(sides[k]), float(severity[k]), int(zone[k]))
        subtle = severity[k] < 0.2 * (0.5 + difficulty)
        if subtle and finding not in ("support_devices",) and rng.random() < 0.6:
            name = finding.replace("pleural_effusion", "effusion").replace("_", " ")
            side = SIDE_WORD.get(int(sides[k]))
            hedge = HEDGE[rng.integers(len(HEDGE))].format(f"{side} {name}" if side else name)
            sentence = hedge[0].upper() + hedge[1:]
        findings_sentences.append(sentence)
        locations[finding] = where
        side_text = {RIGHT: "Right", LEFT: "Left", BILATERAL: "Bilateral"}[int(sides[k])]
        lobe = LOBES.get(int(sides[k]), ("",))[min(int(zone[k]), len(LOBES.get(int(sides[k]), ("",))) - 1)]
        template = IMPRESSION_NAMES[finding][rng.integers(2)]
        impression.append(template.format(side=side_text, lobe=lobe, zone=ZONES[int(zone[k])]))
    # Pertinent negatives of some absent findings, so that negation has to be read.
    absent = [f for f in FINDINGS if f not in present and NEGATIONS[f]]
    for finding in rng.permutation(absent)[: rng.integers(2, 5)]:
        options = NEGATIONS[str(finding)]
        findings_sentences.append(options[rng.integers(len(options))])
    order = rng.permutation(len(findings_sentences))
    findings_sentences = [findings_sentences[i] for i in order]
    impression = impression[:2]
    return findings_sentences + impression, len(findings_sentences), locations

