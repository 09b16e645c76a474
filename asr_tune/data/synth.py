"""The embedded default corpus: spoken digit strings and short commands synthesised with eSpeak NG.

Everything is offline: ``espeakng-loader`` ships ``libespeak-ng`` and its voice data inside the
wheel, and this module drives the library through ``ctypes`` (synchronous mode, samples collected by
a synth callback). Nothing is downloaded at run time.

* Vocabulary: 40 words -- the ten digits plus a small command grammar ("turn on the lights", "set the
  volume to seven", "call five two nine", ...). Transcripts are lower-case words.
* Speakers: an English voice (``en``, ``en-us``, ``en-gb-x-rp``, ...) combined with an eSpeak voice
  variant (``+m3``, ``+f4``, ``+klatt2``, ``+steph``, ...); the speaker id is ``"en-us+m3"``. The
  variants are partitioned into train / dev / test, so the test (and dev) speakers are disjoint from
  the train speakers and their timbres are never seen in training.
* Per utterance: random speaking rate (120-220 wpm), pitch, pitch range and word gap; leading and
  trailing silence trimmed to a short random margin; random level; with probability ``noise_prob``
  additive white / pink / brown noise at 10-30 dB SNR.
* Deterministic for a given seed (byte-identical FLAC files): libespeak-ng keeps synthesis state in
  static variables that ``espeak_Terminate`` does not reset, so each utterance is rendered by a
  freshly loaded private copy of the library, with its random seed set.
* Atomic: stale manifests are removed first and ``train/dev/test.jsonl`` are written only after all
  audio exists, so a failed or interrupted build leaves no complete-looking corpus.

Large builds run in worker subprocesses (``python -m asr_tune.data.synth --worker``), which avoids
``multiprocessing``'s re-import of the caller's main module.
"""
from __future__ import annotations

import ctypes
import io
import json
import math
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf

from asr_tune.data.manifest import Utterance, normalize_text, write_manifest
from asr_tune.errors import DataError

# ----------------------------------------------------------------------------------------------
# Vocabulary and grammar
# ----------------------------------------------------------------------------------------------

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DEVICES = ("lights", "music", "fan", "heater", "radio")
_SETTINGS = ("volume", "temperature", "timer")
_OPENABLE = ("door", "window", "garage")
_OPEN_VERBS = ("open", "close", "lock", "unlock")
_MEDIA_VERBS = ("play", "pause", "stop")

VOCABULARY: frozenset[str] = frozenset(
    DIGIT_WORDS + _DEVICES + _SETTINGS + _OPENABLE + _OPEN_VERBS + _MEDIA_VERBS
    + ("turn", "on", "off", "the", "set", "to", "up", "down", "call", "dial", "next", "song")
)


def _digits(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    n = int(rng.integers(lo, hi + 1))
    return [DIGIT_WORDS[int(d)] for d in rng.integers(0, 10, size=n)]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_text(rng: np.random.Generator) -> str:
    """One transcript: half digit strings (1-7 digits), half command phrases."""
    if rng.random() < 0.5:
        words = _digits(rng, 1, 7)
    else:
        kind = int(rng.integers(7))
        if kind == 0:
            words = ["turn", _pick(rng, ("on", "off")), "the", _pick(rng, _DEVICES)]
        elif kind == 1:
            words = ["turn", "the", _pick(rng, _SETTINGS[:2]), _pick(rng, ("up", "down"))]
        elif kind == 2:
            words = ["set"] + (["the"] if rng.random() < 0.5 else []) + [_pick(rng, _SETTINGS), "to"]
            words += _digits(rng, 1, 2)
        elif kind == 3:
            words = [_pick(rng, ("call", "dial"))] + _digits(rng, 3, 7)
        elif kind == 4:
            words = [_pick(rng, _OPEN_VERBS), "the", _pick(rng, _OPENABLE)]
        elif kind == 5:
            words = [_pick(rng, _MEDIA_VERBS), "the", _pick(rng, ("music", "radio", "song"))]
            if words[0] == "play" and rng.random() < 0.4:
                words = ["play", "the", "next", "song"]
        else:
            words = [_pick(rng, _SETTINGS[:2]), _pick(rng, ("up", "down"))]
    return normalize_text(" ".join(words))


# ----------------------------------------------------------------------------------------------
# Voices
# ----------------------------------------------------------------------------------------------

#: English languages of eSpeak NG (``en-shaw`` is left out: it reads the Shavian alphabet).
LANGUAGES = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
             "en-us", "en-us-nyc")

# Variants (espeak-ng-data/voices/!v) grouped so that every split gets some of each kind. Left out:
# whisper/whisperf/caleb (unvoiced), croak, Demonic, UniRobot, anikaRobot, robosoft*, RicishayMax*
# and announcer (heavy echo / robotic effects), fast (a test setting), "Mr serious" (space in name).
_VARIANT_GROUPS = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Andy", "AnxiousAndy", "Denis",
             "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
             "Michael", "Mike", "Nguyen", "Storm", "Tweaky", "antonio", "boris", "ed", "grandpa",
             "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "marcelo",
             "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
             "robert", "sandro", "travis", "victor"),
    "female": ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
               "grandma", "linda", "shelby", "steph", "steph2", "steph3", "zac"),
    "klatt": ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Reed", "adam", "benjamin",
              "david", "edward", "edward2", "mike2"),
}
_SPLIT_FRACTIONS = {"test": 0.15, "dev": 0.10}  # of the variants of each group; train gets the rest
_UTT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}

# eSpeak API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


def _espeak_paths() -> tuple[Path, Path]:
    """(library, espeak-ng-data) from the espeakng-loader wheel; DataError if unusable."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise DataError(f"eSpeak NG is not available: cannot import espeakng_loader ({err}); "
                        "install it with `pip install espeakng-loader`") from None
    lib = Path(espeakng_loader.get_library_path())
    try:
        data = Path(espeakng_loader.get_data_path())
    except Exception as err:  # RuntimeError when the data folder is missing
        raise DataError(f"eSpeak NG voice data missing ({err})") from None
    if not lib.is_file():
        raise DataError(f"{lib}: eSpeak NG library not found (reinstall espeakng-loader)")
    return lib, data


class _Espeak:
    """Renders utterances with a private copy of libespeak-ng, freshly loaded for each one.

    A private copy (a file of our own in a temp dir) keeps other users of libespeak-ng in the same
    process from sharing -- and perturbing -- its static state; loading it anew per utterance makes
    the output independent of what was synthesised before (``dlclose`` unloads it completely).
    """

    def __init__(self) -> None:
        src, self.data_path = _espeak_paths()
        self._tmp = tempfile.mkdtemp(prefix="asr_tune_espeak_")
        self.lib_path = Path(self._tmp) / src.name
        try:
            shutil.copyfile(src, self.lib_path)
        except OSError as err:
            self.close()
            raise DataError(f"{src}: cannot copy the eSpeak NG library to {self._tmp} ({err})") from None
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)
        try:
            self._libc = ctypes.CDLL(None)
        except (OSError, TypeError):  # TypeError on Windows
            self._libc = None
        self.sample_rate = 0
        self.version = ""
        self.variants = self._listing("voices/!v")
        self.languages = {p.name.lower() for p in (self.data_path / "lang").rglob("*") if p.is_file()}
        try:  # a smoke test, so that a broken install fails here with a clear message
            self.synth("one", "en", 175, 50, 50, 0, seed=0)
        except BaseException:
            self.close()
            raise

    def _listing(self, sub: str) -> set[str]:
        folder = self.data_path / sub
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _collect(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    @contextmanager
    def _loaded(self) -> Iterator[ctypes.CDLL]:
        try:
            lib = ctypes.CDLL(str(self.lib_path), mode=getattr(os, "RTLD_LOCAL", 0))
        except OSError as err:
            raise DataError(f"{self.lib_path}: cannot load eSpeak NG library ({err})") from None
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                       _INITIALIZE_DONT_EXIT)
            if sr <= 0:
                raise DataError(f"{self.data_path}: eSpeak NG failed to initialise (code {sr})")
            self.sample_rate = sr
            if not self.version:
                self.version = (lib.espeak_Info(None) or b"").decode(errors="replace")
            lib.espeak_SetSynthCallback(self._callback)
            try:
                yield lib
            finally:
                lib.espeak_Terminate()
        finally:
            import _ctypes

            unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
            if unload is not None:
                unload(lib._handle)

    def synth(self, text: str, voice: str, rate: int, pitch: int, prange: int, wordgap: int,
              seed: int) -> np.ndarray:
        """Float32 samples at ``self.sample_rate`` for ``text`` spoken by ``voice`` ("en-us+m3")."""
        self._chunks = []
        with self._loaded() as lib:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"eSpeak NG has no voice {voice!r} (data: {self.data_path})")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, prange), (_WORDGAP, wordgap)):
                lib.espeak_SetParameter(param, int(value), 0)
            seed = int(seed) & 0x7FFFFFFF
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_ng_SetRandSeed(seed)
            if self._libc is not None:
                self._libc.srand(seed)  # some variants (breath + klatt) draw from libc's rand()
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise DataError(f"eSpeak NG failed to synthesise {text!r} with {voice} (code {err})")
        if not self._chunks:
            raise DataError(f"eSpeak NG produced no audio for {text!r} with voice {voice}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


# ----------------------------------------------------------------------------------------------
# Signal processing
# ----------------------------------------------------------------------------------------------

def trim_silence(x: np.ndarray, sample_rate: int, threshold_db: float = -40.0,
                 margin_s: tuple[float, float] | float = 0.1) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` (re the loudest 10 ms frame),
    keeping ``margin_s`` seconds (lead, tail) of it -- padded with zeros where there is less."""
    lead, tail = (margin_s, margin_s) if isinstance(margin_s, (int, float)) else margin_s
    hop = max(1, int(sample_rate * 0.01))
    n_frames = max(1, len(x) // hop)
    frames = x[: n_frames * hop].reshape(n_frames, hop) if len(x) >= hop else x.reshape(1, -1)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    active = np.nonzero(rms >= rms.max() * 10 ** (threshold_db / 20))[0]
    if len(active) == 0 or rms.max() < 1e-6:
        return x
    start = active[0] * hop - int(lead * sample_rate)
    end = (active[-1] + 1) * hop + int(tail * sample_rate)
    out = x[max(start, 0): min(end, len(x))]
    pad = (max(-start, 0), max(end - len(x), 0))
    return np.pad(out, pad) if any(pad) else out


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


def _noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f) if color == "pink" else f  # 1/f power (pink) or 1/f^2 (brown)
    return np.fft.irfft(spec, n)


def _render(task: dict, engine: _Espeak) -> int:
    """Synthesise one utterance to ``task["path"]`` (atomically); returns its length in samples."""
    rng = np.random.default_rng([task["seed"], task["index"], 1])
    x = engine.synth(task["text"], task["speaker"], task["rate"], task["pitch"], task["range"],
                     task["wordgap"], seed=task["seed"] * 1_000_003 + task["index"])
    sr = task["sample_rate"]
    x = _resample(x, engine.sample_rate, sr)
    x = trim_silence(x, sr, -40.0, (float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.05, 0.2))))
    peak = float(np.max(np.abs(x))) or 1.0
    x = x * (float(rng.uniform(0.25, 0.9)) / peak)
    if task["noise_snr_db"] is not None:
        speech = x[np.abs(x) > 0.01 * np.max(np.abs(x))]
        p_speech = float(np.mean(speech.astype(np.float64) ** 2)) if len(speech) else 1e-4
        noise = _noise(rng, len(x), task["noise_color"])
        noise *= math.sqrt(p_speech / 10 ** (task["noise_snr_db"] / 10) / (np.mean(noise ** 2) + 1e-20))
        x = x + noise.astype(np.float32)
        peak = float(np.max(np.abs(x)))
        if peak > 0.99:
            x = x * (0.99 / peak)
    write_flac(task["path"], x, sr)
    return len(x)


def write_flac(path: str | Path, x: np.ndarray, sample_rate: int) -> None:
    """16-bit FLAC written to a temp name and renamed, so no half-written file has the final name."""
    path = Path(path)
    buf = io.BytesIO()  # encoding in memory: libsndfile's many small writes are slow on some disks
    sf.write(buf, np.clip(x, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------

def _split_variants(rng: np.random.Generator, available: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for group in _VARIANT_GROUPS.values():
        names = [v for v in group if v in available]
        names = [names[i] for i in rng.permutation(len(names))]
        if len(names) < 3:
            out["train"] += names
            continue
        n_test = max(1, round(_SPLIT_FRACTIONS["test"] * len(names)))
        n_dev = max(1, round(_SPLIT_FRACTIONS["dev"] * len(names)))
        out["test"] += names[:n_test]
        out["dev"] += names[n_test:n_test + n_dev]
        out["train"] += names[n_test + n_dev:]
    if not all(out.values()):
        raise DataError(f"eSpeak NG voice data has too few voice variants ({sorted(available)})")
    return {k: sorted(v, key=str.lower) for k, v in out.items()}


def _split_sizes(n: int) -> dict[str, int]:
    n_dev = max(1, round(n * _UTT_FRACTIONS["dev"]))
    n_test = max(1, round(n * _UTT_FRACTIONS["test"]))
    return {"train": n - n_dev - n_test, "dev": n_dev, "test": n_test}


def _progress(items: Iterable, total: int, desc: str, enabled: bool) -> Iterator:
    """Wrap ``items`` in a tqdm bar (a no-op wrapper when disabled)."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="utt", dynamic_ncols=True) as bar:
        for item in items:
            yield item
            bar.update(1)


def _remove_stale(out_dir: Path, names: Iterable[str]) -> None:
    for name in names:
        (out_dir / name).unlink(missing_ok=True)


def _write_manifests(out_dir: Path, rows: dict[str, list[Utterance]], info: dict) -> dict[str, Path]:
    """corpus.json, then the three manifests; on failure, none of them is left behind."""
    written: list[Path] = []
    try:
        tmp = out_dir / ".corpus.json.partial"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out_dir / "corpus.json")
        written.append(out_dir / "corpus.json")
        paths = {}
        for split in ("train", "dev", "test"):
            paths[split] = write_manifest(out_dir / f"{split}.jsonl", rows[split])
            written.append(paths[split])
        return paths
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def _n_workers(n_tasks: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    if n_tasks < 200 or cpus < 2:
        return 1
    return min(cpus, 4)


def _run_serial(tasks: list[dict], engine: _Espeak) -> Iterator[tuple[int, int]]:
    for task in tasks:
        yield task["index"], _render(task, engine)


def _run_workers(tasks: list[dict], n_workers: int) -> Iterator[tuple[int, int]]:
    """Render in ``n_workers`` subprocesses; yields (index, n_samples) as they finish."""
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    procs: list[subprocess.Popen] = []
    err_files: list = []
    sel = selectors.DefaultSelector()
    try:
        for k in range(n_workers):
            shard = tasks[k::n_workers]
            err_file = tempfile.TemporaryFile(mode="w+")
            p = subprocess.Popen([sys.executable, "-m", "asr_tune.data.synth", "--worker"], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file,
                                 text=True)
            procs.append(p)
            err_files.append(err_file)
            feeder = threading.Thread(target=_feed, args=(p, shard), daemon=True)
            feeder.start()
            sel.register(p.stdout, selectors.EVENT_READ, p)
        open_streams = n_workers
        while open_streams:
            for key, _ in sel.select():
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "ok":
                    idx, n = rest.split()
                    yield int(idx), int(n)
                elif kind == "error":
                    raise DataError(rest)
        for p, err_file in zip(procs, err_files):
            if p.wait() != 0:
                err_file.seek(0)
                err = err_file.read().strip().splitlines()
                raise DataError(f"speech synthesis worker failed (exit {p.returncode}): "
                                f"{err[-1] if err else 'no message'}")
    finally:
        sel.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdin, p.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        for err_file in err_files:
            err_file.close()


def _feed(proc: subprocess.Popen, shard: list[dict]) -> None:
    try:
        proc.stdin.write(json.dumps(shard))
        proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _worker_main() -> int:
    """``python -m asr_tune.data.synth --worker``: tasks as JSON on stdin, one line per result."""
    tasks = json.loads(sys.stdin.read())
    try:
        engine = _Espeak()
    except DataError as err:
        print(f"error {err}", flush=True)
        return 1
    try:
        for task in tasks:
            try:
                n = _render(task, engine)
            except DataError as err:
                print(f"error {err}", flush=True)
                return 1
            print(f"ok {task['index']} {n}", flush=True)
    finally:
        engine.close()
    return 0


def build_synth_corpus(out_dir: str | Path, n_utterances: int = 1200, seed: int = 0,
                       sample_rate: int = 16000, noise_prob: float = 0.3,
                       progress: bool = True) -> dict[str, Path]:
    """Synthesise the default corpus into ``out_dir``; returns ``{"train"|"dev"|"test": manifest}``.

    Audio goes to ``out_dir/audio/*.flac``, the build parameters and per-split voices to
    ``out_dir/corpus.json``. Raises ``DataError`` when eSpeak NG cannot be loaded.
    """
    if n_utterances < 3:
        raise DataError(f"n_utterances must be >= 3 (one per split), got {n_utterances}")
    if sample_rate <= 0:
        raise DataError(f"sample_rate must be > 0, got {sample_rate}")
    if not 0.0 <= noise_prob <= 1.0:
        raise DataError(f"noise_prob must be in [0, 1], got {noise_prob}")
    started = time.perf_counter()
    engine = _Espeak()
    try:
        languages = [lang for lang in LANGUAGES if lang in engine.languages]
        if not languages:
            raise DataError(f"{engine.data_path}: eSpeak NG data has none of the English voices {LANGUAGES}")
        rng = np.random.default_rng(seed)
        variants = _split_variants(rng, engine.variants)
        sizes = _split_sizes(n_utterances)

        out_dir = Path(out_dir)
        audio_dir = out_dir / "audio"
        audio_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(out_dir, ("train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json"))

        tasks: list[dict] = []
        meta: list[tuple[str, str, str, str]] = []  # split, id, text, speaker
        for split in ("train", "dev", "test"):
            for i in range(sizes[split]):
                uid = f"synth-{split}-{i:05d}"
                speaker = f"{_pick(rng, tuple(languages))}+{_pick(rng, tuple(variants[split]))}"
                text = make_text(rng)
                noisy = rng.random() < noise_prob
                tasks.append({
                    "index": len(tasks), "seed": int(seed), "text": text, "speaker": speaker,
                    "rate": int(rng.integers(120, 221)), "pitch": int(rng.integers(25, 76)),
                    "range": int(rng.integers(20, 91)),
                    "wordgap": int(rng.choice([0, 0, 0, 1, 2])),
                    "noise_snr_db": round(float(rng.uniform(10.0, 30.0)), 2) if noisy else None,
                    "noise_color": _pick(rng, ("white", "pink", "brown")),
                    "sample_rate": int(sample_rate), "path": str(audio_dir / f"{uid}.flac"),
                })
                meta.append((split, uid, text, speaker))

        n_workers = _n_workers(len(tasks))
        results = _run_serial(tasks, engine) if n_workers == 1 else _run_workers(tasks, n_workers)
        lengths: dict[int, int] = {}
        try:
            for idx, n in _progress(results, len(tasks), "synthesising corpus", progress):
                lengths[idx] = n
        finally:
            results.close()  # stops worker subprocesses now, even if a traceback keeps this frame
        if len(lengths) != len(tasks):
            raise DataError(f"{out_dir}: synthesis finished with {len(tasks) - len(lengths)} "
                            "utterances missing")

        rows: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
        for task, (split, uid, text, speaker) in zip(tasks, meta):
            rows[split].append(Utterance(task["path"], lengths[task["index"]] / sample_rate, text,
                                         speaker, uid))
        info = {
            "kind": "synth",
            "params": {"n_utterances": n_utterances, "seed": seed, "sample_rate": sample_rate,
                       "noise_prob": noise_prob, "rate_wpm": [120, 220], "pitch": [25, 75],
                       "pitch_range": [20, 90], "snr_db": [10.0, 30.0]},
            "espeak": {"version": engine.version, "native_sample_rate": engine.sample_rate},
            "languages": languages,
            "vocabulary": sorted(VOCABULARY),
            "splits": {
                split: {
                    "utterances": len(rows[split]),
                    "hours": round(sum(r.duration for r in rows[split]) / 3600, 4),
                    "variants": variants[split],
                    "speakers": sorted({r.speaker for r in rows[split]}),
                }
                for split in ("train", "dev", "test")
            },
            "build_seconds": round(time.perf_counter() - started, 2),
            "workers": n_workers,
        }
        return _write_manifests(out_dir, rows, info)
    finally:
        engine.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    import argparse

    ap = argparse.ArgumentParser(description="Build the synthetic eSpeak NG corpus.")
    ap.add_argument("out_dir")
    ap.add_argument("-n", "--n-utterances", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--noise-prob", type=float, default=0.3)
    args = ap.parse_args()
    try:
        out = build_synth_corpus(args.out_dir, args.n_utterances, args.seed, args.sample_rate,
                                 args.noise_prob)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({k: str(v) for k, v in out.items()}))
