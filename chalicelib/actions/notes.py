"""Staff notes on a customer or one of its payments, on the one action mechanism
(``actions.service.run``): the form's one-time action id makes a double submission add the
note once; the activity log records who added a note on what (not its text: the note
itself is kept by chalicelib/notes, which the timeline reads)."""
from __future__ import annotations

from chalicelib.actions import service as actions
from chalicelib.actions.service import ActionContext, ActionSpec, Result, Step
from chalicelib.notes import service as notes


def add_note(ctx: ActionContext, customer_id: str, text: str,
             object_ref: str | None = None) -> dict:
    """Add a note (BadRequest for an empty or too long text, NotFound for a customer not
    the account's); returns it as listed."""
    spec = ActionSpec(name="note.add", customer_id=customer_id, permission="note",
                      request={"text": text, "object_ref": object_ref or None})

    def perform(step: Step) -> Result:
        note = notes.add(ctx.account_id, customer_id, ctx.actor_id, ctx.actor_email or "",
                         text, object_ref or None)
        return Result(body={"note": {"id": note["id"], "object_ref": note["object_ref"]}},
                      after={"note_id": note["id"], "object_ref": note["object_ref"]})

    return actions.run(ctx, spec, perform).body["note"]
