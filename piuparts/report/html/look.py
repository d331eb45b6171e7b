"""How each state looks: a word, an icon and a colour (Okabe-Ito, safe for colour-blind
readers), and a dash pattern for the graph.  The word and icon always go with the colour."""

from __future__ import annotations

from dataclasses import dataclass

from piuparts.batch import states as st


@dataclass(frozen=True)
class Look:
    """The looks of one state."""

    icon: str
    colour: str
    dash: str
    #: A CSS class name (the state's own name is one already; this groups them).
    group: str


STYLE: dict[str, Look] = {
    st.PASSED: Look("✓", "#009E73", "none", "good"),
    st.FAILED: Look("✗", "#D55E00", "8 3", "bad"),
    st.CANNOT: Look("⊘", "#CC79A7", "2 3", "bad"),
    st.WAITING: Look("○", "#56B4E9", "12 4", "wait"),
    st.WAITING_DEP: Look("◔", "#0072B2", "4 4", "wait"),
    st.DEP_FAILED: Look("↯", "#E69F00", "10 3 2 3", "held"),
    st.DEP_CANNOT: Look("⊗", "#999999", "1 2", "held"),
    st.DEP_MISSING: Look("?", "#000000", "6 2 1 2", "held"),
    st.UNKNOWN: Look("…", "#666666", "1 6", "held"),
}

#: The order states are listed in: what needs a person first.
ORDER = (st.FAILED, st.CANNOT, st.DEP_FAILED, st.DEP_CANNOT, st.DEP_MISSING, st.WAITING, st.WAITING_DEP,
         st.UNKNOWN, st.PASSED)

#: Verdicts of one result (RunResult.verdict) and their looks.
VERDICTS: dict[str, Look] = {
    "PASS": Look("✓", "#009E73", "none", "good"),
    "FAIL": Look("✗", "#D55E00", "none", "bad"),
    "ERROR": Look("⊘", "#CC79A7", "none", "bad"),
}

#: Finding severities.
SEVERITIES: dict[str, Look] = {
    "fail": Look("✗", "#D55E00", "none", "bad"),
    "warn": Look("⚠", "#E69F00", "none", "held"),
    "info": Look("ℹ", "#0072B2", "none", "wait"),
}
