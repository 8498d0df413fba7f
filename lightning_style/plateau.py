"""``Plateau``: ends a batch early once its loss stops improving, so that easy pairs don't wait for ``steps``."""


class Plateau:
    """Remembers a batch's loss at each check and says when it improved by less than ``tolerance`` (relative)
    over the last ``window`` steps. ``tolerance`` 0 never stops early.

    The steps after the stop still come (every process keeps the same step count, and the plan does not move),
    but they cost nothing: no forward, no optimiser step.
    """

    def __init__(self, tolerance: float = 0.0, window: int = 100) -> None:
        self.tolerance, self.window = tolerance, window
        self.history: list[tuple[int, float]] = []  # (step within the batch, its loss) at each check
        self.stopped_at: int | None = None  # the step within the batch at which the loss stopped improving

    def start_batch(self) -> None:
        self.history, self.stopped_at = [], None

    def update(self, step: int, loss: float) -> bool:
        """Note the batch's ``loss`` after ``step`` steps; True once it has stopped improving."""
        if self.tolerance <= 0 or self.stopped_at is not None:
            return self.stopped_at is not None
        self.history.append((step, loss))
        before = [old for at, old in self.history if at <= step - self.window]
        if before and before[-1] - loss < self.tolerance * abs(before[-1]):
            self.stopped_at = step
        self.history = [(at, old) for at, old in self.history if at > step - 2 * self.window]
        return self.stopped_at is not None

    def state_dict(self) -> dict:
        return {"history": list(self.history), "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {"history": [], "stopped_at": None}
        self.history, self.stopped_at = [tuple(item) for item in state["history"]], state["stopped_at"]
