"""One labelled image reference (Dassl's Datum)."""


class Datum:
    """An image path with its label, domain and class name; read-only after construction."""

    __slots__ = ("_classname", "_domain", "_impath", "_label")

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, classname={self._classname!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return (self._impath, self._label, self._domain, self._classname) == (
            other._impath,
            other._label,
            other._domain,
            other._classname,
        )

    def __hash__(self) -> int:
        return hash((self._impath, self._label, self._domain, self._classname))
