"""Notifications (promotions/notifications.py): a project's outgoing webhooks and their delivery log,
and a schedule every minute that hands out again a delivery whose task was lost (a killed worker,
a broker that dropped it). Operators can change its interval in the admin (Django Q → Scheduled tasks)."""

import django.db.models.deletion
from django.db import migrations, models

import environments.fields

NAME = "hoist-notifications"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME,
        defaults={"func": "promotions.notifications.sweep", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0002_audit_outcome"),
        ("promotions", "0010_promotion_awaiting_approval"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProjectWebhook",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("url", environments.fields.EncryptedTextField()),
                ("format", models.CharField(choices=[("slack", "Slack-compatible"), ("hoist", "Hoist JSON, signed")],
                                            default="hoist", max_length=10)),
                ("secret", environments.fields.EncryptedTextField(blank=True)),
                ("events", models.JSONField(blank=True, default=list, help_text="Event names; empty: every event.")),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="webhooks",
                                              to="projects.project")),
            ],
            options={"ordering": ["name", "pk"]},
        ),
        migrations.AddConstraint(
            model_name="projectwebhook",
            constraint=models.UniqueConstraint(fields=("project", "name"), name="project_webhook_name_unique"),
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event", models.CharField(max_length=40)),
                ("body", models.TextField()),
                ("status", models.CharField(choices=[("queued", "Queued"), ("retrying", "Retrying"),
                                                     ("delivered", "Delivered"), ("failed", "Failed")],
                                            default="queued", max_length=10)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("response_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                ("webhook", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="deliveries",
                                              to="promotions.projectwebhook")),
            ],
            options={
                "ordering": ["-id"],
                "indexes": [models.Index(fields=["webhook", "-id"], name="webhook_delivery_log"),
                            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")],
            },
        ),
        migrations.RunPython(create, remove),
    ]
