"""Re-encrypt stored credentials and secret values under the first credentials key.

    HOIST_CREDENTIALS_KEY=NEW,OLD python manage.py rotate_credentials --check   # what is left under OLD
    HOIST_CREDENTIALS_KEY=NEW,OLD python manage.py rotate_credentials           # re-encrypt it under NEW

Once a run (or a --check) reports nothing left and nothing unreadable, OLD can be
removed from HOIST_CREDENTIALS_KEY. See docs/deploying.md.
"""

from django.core.management.base import BaseCommand, CommandError

from core import doors
from environments import services


class Command(BaseCommand):
    help = "Re-encrypt every stored credential and secret value under the first HOIST_CREDENTIALS_KEY key."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true",
                            help="only count the values not under the first key yet; change nothing (exit 1 if any)")

    def handle(self, *args, check: bool = False, **options):
        with doors.door("command"):
            found = services.credentials_rotate(check=check)
        verb = "to re-encrypt" if check else "re-encrypted"
        for name in found.current:
            line = f"{name}: {found.current[name]} under the first key, {found.rotated[name]} {verb}"
            if name in found.unreadable:
                line += f", {len(found.unreadable[name])} unreadable"
            self.stdout.write(line)
        if found.unreadable:
            where = "; ".join(f"{name} ids {', '.join(map(str, ids[:20]))}{' …' if len(ids) > 20 else ''}"
                              for name, ids in found.unreadable.items())
            raise CommandError(f"values no key in HOIST_CREDENTIALS_KEY decrypts (left as they are): {where}. "
                               "Put the key that encrypted them back before removing any.")
        if check and found.pending:
            raise CommandError(f"{found.pending} values are not under the first key yet: run without --check.")
        if check:
            self.stdout.write("everything is under the first key: the other keys can be removed")
        else:
            self.stdout.write(f"{found.pending} values re-encrypted; everything is under the first key now")
