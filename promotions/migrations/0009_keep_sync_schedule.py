"""Keep tags (promotions/keeping.py): every few minutes, keep in the registries what each
resource runs, is pinned to or may roll back to, and release what nobody needs any more. Every
change also keeps what it needs at once; this schedule releases, checks kept tags once a day and
retries what failed. Operators can change its interval in the admin (Django Q → Scheduled tasks)."""

from django.db import migrations

NAME = "hoist-keep-tags"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME,
        defaults={"func": "promotions.tasks.sync_keeps", "schedule_type": "I", "minutes": 5, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0008_tag_head_seen_at"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
