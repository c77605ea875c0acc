"""ImageNet-1k subsets at 128×128 (docs/method.md §7): ImageNette, ImageWoof, ImageFruit, ImageYellow,
ImageMeow, ImageSquawk.

Each subset is a list of ImageNet-1k class ids = positions in the sorted wnid list. ImageNette and
ImageWoof wnids are hard-coded (they are published); the other four are resolved at load time from a
class-index file under ``<data_dir>/imagenet`` and checked against the expected class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gsdd_cli.core.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESOLUTION = 128
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class Subset:
    name: str
    class_ids: tuple[int, ...]  # as listed in the reference code (NOT the label order)
    names: tuple[str, ...]  # expected (lower-case substring of) ImageNet class descriptions
    wnids: tuple[str, ...] | None = None  # hard-coded when published (ascending = label order)


SUBSETS: dict[str, Subset] = {
    s.name: s
    for s in (
        Subset(
            "imagenette",
            (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
            ("tench", "english springer", "cassette player", "chain saw", "church",
             "french horn", "garbage truck", "gas pump", "golf ball", "parachute"),
            ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
             "n03394916", "n03417042", "n03425413", "n03445777", "n03888605"),
        ),
        Subset(
            "imagewoof",
            (193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
            ("australian terrier", "border terrier", "samoyed", "beagle", "shih-tzu",
             "english foxhound", "rhodesian ridgeback", "dingo", "golden retriever",
             "old english sheepdog"),
            ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754",
             "n02096294", "n02099601", "n02105641", "n02111889", "n02115641"),
        ),
        Subset(
            "imagefruit",
            (953, 954, 949, 950, 951, 957, 952, 945, 943, 948),
            ("pineapple", "banana", "strawberry", "orange", "lemon", "pomegranate", "fig",
             "bell pepper", "cucumber", "granny smith"),
        ),
        Subset(
            "imageyellow",
            (309, 986, 954, 951, 987, 779, 599, 291, 72, 11),
            ("bee", "yellow lady's slipper", "banana", "lemon", "corn", "school bus",
             "honeycomb", "lion", "garden spider", "goldfinch"),
        ),
        Subset(
            "imagemeow",
            (281, 282, 283, 284, 285, 291, 292, 290, 289, 287),
            ("tabby", "tiger cat", "persian", "siamese", "egyptian cat", "lion", "tiger",
             "jaguar", "snow leopard", "lynx"),
        ),
        Subset(
            "imagesquawk",
            (84, 130, 88, 144, 145, 22, 96, 9, 100, 89),
            ("peacock", "flamingo", "macaw", "pelican", "king penguin", "bald eagle", "toucan",
             "ostrich", "black swan", "sulphur-crested cockatoo"),
        ),
    )
}

CLASS_INDEX_FILES = ("LOC_synset_mapping.txt", "synset_mapping.txt", "synsets.txt", "wnids.txt")


def read_class_index(imagenet_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The 1000 sorted wnids and (when the file has them) their descriptions.

    Looks for a class-index file (``LOC_synset_mapping.txt`` of the Kaggle ImageNet release: one
    ``<wnid> <description>`` per line in class-id order; or ``wnids.txt``/``synsets.txt``), else
    falls back to the sorted folder names of ``<imagenet_dir>/train`` when there are exactly 1000.
    """
    for fname in CLASS_INDEX_FILES:
        f = imagenet_dir / fname
        if f.is_file():
            wnids, desc = [], {}
            for line in f.read_text().splitlines():
                line = line.strip()
                if not line:
                    continue
                wnid, _, text = line.partition(" ")
                wnids.append(wnid)
                desc[wnid] = text.strip()
            if len(wnids) != 1000:
                raise DataError(f"{f}: expected 1000 ImageNet classes, found {len(wnids)}")
            return sorted(wnids), desc
    train = imagenet_dir / "train"
    if train.is_dir():
        folders = sorted(p.name for p in train.iterdir() if p.is_dir() and p.name.startswith("n"))
        if len(folders) == 1000:
            return folders, {}
    raise DataError(
        f"cannot map ImageNet class ids to wnids: put LOC_synset_mapping.txt (1000 lines "
        f"'<wnid> <name>') in {imagenet_dir} or all 1000 class folders in {train}"
    )


def subset_wnids(subset: Subset, imagenet_dir: Path) -> list[str]:
    """The subset's 10 wnids in label order (ascending wnid)."""
    if subset.wnids is not None:
        return sorted(subset.wnids)
    all_wnids, desc = read_class_index(imagenet_dir)
    chosen = [all_wnids[i] for i in subset.class_ids]
    if desc:
        for wnid, expected in zip(chosen, subset.names):
            text = desc.get(wnid, "").lower()
            if expected not in text:
                raise DataError(
                    f"{subset.name}: class {wnid} is {desc.get(wnid)!r}, expected {expected!r}; "
                    "the class-index file is not the standard ImageNet-1k one"
                )
    return sorted(chosen)


def subset_class_names(subset: Subset) -> list[str]:
    """Human-readable class names in label order (ascending wnid)."""
    order = sorted(range(10), key=lambda i: subset.class_ids[i])  # sorted wnid = sorted id
    return [subset.names[i] for i in order]
