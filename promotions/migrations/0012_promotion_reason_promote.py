"""The one-click promote is recorded as its own reason (`promote`), no longer as a pin edit.

Earlier promotes that waited for approvals are known by their change request's kind and are
relabelled; a promote applied at once left nothing on its row that tells it from a pin edit
(the audit log has it as `resource.promote`), so those stay `pin_edit`."""

from django.db import migrations, models


def relabel(apps, schema_editor):
    Promotion = apps.get_model("promotions", "Promotion")
    Promotion.objects.filter(reason="pin_edit", change_request__kind="promote").update(reason="promote")


def unlabel(apps, schema_editor):
    Promotion = apps.get_model("promotions", "Promotion")
    Promotion.objects.filter(reason="promote").update(reason="pin_edit")


class Migration(migrations.Migration):

    dependencies = [
        ("environments", "0007_governance"),
        ("promotions", "0011_project_webhooks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="promotion",
            name="reason",
            field=models.CharField(choices=[("publish", "Publish"), ("track_latest", "Track latest"), ("pin_edit", "Pin edited"),
                                            ("promote", "Promoted"), ("rollback", "Rollback"), ("create", "Resource created"),
                                            ("drift", "Drift corrected")], max_length=20),
        ),
        migrations.RunPython(relabel, unlabel),
    ]
