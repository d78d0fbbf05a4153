"""The periodic drift sweep: re-reconcile every resource each minute, so a
Deployment edited by hand is put back and a promotion that failed while a
cluster or registry was down is applied once it is back (DESIGN guarantee 8).
Operators can change its interval in the admin (Django Q → Scheduled tasks)."""

from django.db import migrations

NAME = "hoist-drift-sweep"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME,
        defaults={"func": "promotions.tasks.reconcile_all", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
