"""Zero-shot CLIP with CoOp's hand-crafted per-dataset templates (no training)."""

import torch.nn.functional as F
from torch import Tensor

from caspl.engine.trainer import TrainerX
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.build import build_clip, freeze
from caspl.vlm.prompted import encode_texts, text_tower_options
from caspl.vlm.templates import dataset_template, fill


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """CLIP's zero-shot classifier: text features of "template(class)" computed once at build time."""

    def build_model(self) -> None:
        cfg = self.cfg
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        self.clip_model = freeze(build_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)).to(self.device)
        template = dataset_template(cfg.DATASET.NAME)
        prompts = fill(template, self.classnames)
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        features = encode_texts(self.clip_model, prompts, text_tower_options(cfg))
        self.text_features = F.normalize(features, dim=-1)

    def model_inference(self, images: Tensor) -> Tensor:
        image_features = F.normalize(self.clip_model.encode_image(images), dim=-1)
        return self.clip_model.logit_scale.exp() * image_features @ self.text_features.t()

    def train(self) -> None:
        """Nothing to train: evaluate and write results like any run."""
        self.max_epoch = 0
        self.before_train()
        self.after_train()
