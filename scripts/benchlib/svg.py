"""matplotlib for the benches' SVG charts, which are committed: the same
figures draw the same bytes (no date, no random ids, text kept as text).
Needs python3-matplotlib (scripts/deps.sh bench): pyplot() raises
ImportError without it."""


def pyplot(salt):
    """matplotlib.pyplot on the Agg backend; salt: the chart's own seed of
    the SVG ids."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = salt
    matplotlib.rcParams["svg.fonttype"] = "none"
    return plt


def save(plt, fig, path):
    """fig as SVG at path, without a date; returns path."""
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path
