"""UCF101 (101 actions, mid frames): ucf101/UCF-101-midframes + split_zhou_UCF101.json."""

import os
import re

from caspl.data import Datum
from caspl.data.checks import SplitError, lookup_class, numbered_lines
from caspl.data.coop import CoOpDataset
from caspl.data.splits import split_trainval
from caspl.registry import DATASET_REGISTRY


def split_camel_case(action: str) -> str:
    """'ApplyEyeMakeup' -> 'Apply_Eye_Makeup' (CoOp's folder and class-name form)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):
    """UCF101 middle frames; without the split file: ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt."""

    folder = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    split_gdrive_id = "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"
    images_gdrive_id = "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"
    layout = """ucf101/
|-- UCF-101-midframes/            (Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg, ...)
|-- split_zhou_UCF101.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        cname2lab: dict[str, int] = {}
        path = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        for n, text in numbered_lines(path):
            fields = text.split(" ")
            if len(fields) != 2 or not fields[0].isdigit():
                raise SplitError(f"{path}, line {n}: {text!r} is not '<label> <action>'")
            label, action = int(fields[0]) - 1, fields[1]
            if action in cname2lab or label in cname2lab.values():
                raise SplitError(
                    f"{path}, line {n}: {text!r} repeats an action or a label of an earlier line; "
                    "expected each action and label once"
                )
            cname2lab[action] = label
        trainval = self._read_list(cname2lab, "trainlist01.txt")
        test = self._read_list(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        items = []
        path = os.path.join(self.dataset_dir, "ucfTrainTestlist", name)
        for n, text in numbered_lines(path):
            entry = text.split(" ")[0]
            if entry.count("/") != 1:
                raise SplitError(f"{path}, line {n}: {entry!r} is not '<action>/<video>.avi'")
            action, filename = entry.split("/")
            renamed = split_camel_case(action)
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(
                Datum(impath, lookup_class(cname2lab, action, path, n, "classInd.txt"), classname=renamed)
            )
        return items
