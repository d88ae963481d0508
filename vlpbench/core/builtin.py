"""The built-in components, registered through the same hook as any third-party plugin."""

from __future__ import annotations

from vlpbench.core.hookspecs import hookimpl
from vlpbench.core.registry import Registrar

BUILTINS: list[tuple[str, str, str, str]] = [
    ("dataset", "synthcxr", "vlpbench.data.synthcxr_source:SynthCXRSource",
     "embedded synthetic chest radiographs with reports, labels, masks and boxes"),
    ("dataset", "mimic_cxr", "vlpbench.data.real.mimic_cxr:MIMICCXR",
     "MIMIC-CXR-JPG + reports from your local copy: pretraining pairs, official split"),
    ("dataset", "chexpert", "vlpbench.data.real.chexpert:CheXpert",
     "CheXpert from your local copy: 5 competition labels, MGCA's split and uncertainty mapping"),
    ("dataset", "rsna_pneumonia", "vlpbench.data.real.rsna:RSNAPneumonia",
     "RSNA Pneumonia (DICOM) from your local copy: label, boxes, box masks; MGCA's split"),
    ("dataset", "siim_pneumothorax", "vlpbench.data.real.siim:SIIMPneumothorax",
     "SIIM-ACR Pneumothorax (DICOM, RLE masks) from your local copy; MGCA's split"),
    ("dataset", "covidx", "vlpbench.data.real.covidx:COVIDx",
     "COVIDx from your local copy: published split files, 3 classes"),
    ("dataset", "object_cxr", "vlpbench.data.real.object_cxr:ObjectCXR",
     "Object-CXR from your local copy: foreign-object boxes; dev set as test"),
    ("image_encoder", "timm", "vlpbench.models.image_timm:TimmImageEncoder", "any timm CNN or ViT"),
    ("text_encoder", "bert", "vlpbench.models.text_bert:BertTextEncoder",
     "BERT-style encoder from a config or a local Hugging Face directory"),
    ("global_loss", "infonce", "vlpbench.objective.global_losses:InfoNCELoss",
     "CLIP/ConVIRT symmetric InfoNCE, learnable temperature"),
    ("global_loss", "sigmoid", "vlpbench.objective.global_losses:SigmoidLoss", "SigLIP-style sigmoid loss"),
    ("positive_miner", "identity", "vlpbench.objective.miners:IdentityMiner", "only the paired report"),
    ("positive_miner", "oracle", "vlpbench.objective.miners:OracleMiner",
     "identical ground-truth finding sets (upper bound)"),
    ("negative_weighting", "uniform", "vlpbench.objective.weightings:UniformWeighting", "every negative counts once"),
    ("task", "linear_probe", "vlpbench.tasks.linear_probe:LinearProbe",
     "frozen encoder + one linear layer; AUROC / accuracy at label fractions"),
    ("task", "segmentation", "vlpbench.tasks.segmentation:Segmentation",
     "frozen encoder + U-Net / progressive-upsampling decoder; Dice over the whole test set"),
    ("task", "detection", "vlpbench.tasks.detection:Detection",
     "frozen encoder + FCOS-style multi-scale head; mAP over IoU 0.40-0.75"),
    ("task", "zero_shot", "vlpbench.tasks.zero_shot:ZeroShot",
     "image-prompt similarity per finding (positive vs negative phrasings); AUROC"),
    ("task", "retrieval", "vlpbench.tasks.retrieval:Retrieval",
     "image-report Recall@1/5/10 on held-out pairs, strict and semantic"),
    ("launcher", "local", "vlpbench.engine.runner:LocalLauncher", "runs every run in this process"),
    ("launcher", "slurm", "vlpbench.launchers.slurm:SlurmLauncher",
     "one Slurm job array through submitit; requeued tasks resume (settings: the launcher: section)"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(BUILTINS)
