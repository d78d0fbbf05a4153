"""Copy one image by digest between registries, for re-mirroring by hand.

    python manage.py mirror_image 127.0.0.1:5001/shop/web@sha256:… 127.0.0.1:5000/shop/web

Uses the same client and credentials as reconcile (cluster registry
credentials, HOIST_CENTRAL_REGISTRY_USERNAME/PASSWORD) and prints the digest.
"""

from django.core.management.base import BaseCommand, CommandError

from promotions import mirror
from promotions.registry import RegistryError, parse_reference


class Command(BaseCommand):
    help = "Copy an image (by digest, or a tag resolved to one) into a destination repository; prints the digest."

    def add_arguments(self, parser):
        parser.add_argument("source", help="registry/path@sha256:… or registry/path:tag")
        parser.add_argument("destination", help="registry/path (no tag or digest)")

    def handle(self, *args, source, destination, **options):
        try:
            src = parse_reference(source)
            dest = parse_reference(destination)
            if dest.tag or dest.digest:
                raise CommandError(f"destination {destination!r} must be a repository without a tag or digest")
            result = mirror.client().copy(src, dest.name)
        except ValueError as exc:
            raise CommandError(f"not a valid image reference: {exc}") from exc
        except RegistryError as exc:
            hint = " (temporary: try again)" if exc.retryable else ""
            raise CommandError(f"{exc}{hint}") from exc
        if result.already_present:
            self.stderr.write(f"already present in {dest.name}")
        else:
            self.stderr.write(
                f"copied {result.blobs_copied} blobs ({result.bytes_copied} bytes), mounted {result.blobs_mounted}, "
                f"skipped {result.blobs_skipped}, pushed {result.manifests_pushed} manifests"
            )
        self.stdout.write(result.digest)
