"""The Django admin is a second API: every queryset, form choice, filter and action
here is scoped to the tenants where the signed-in user holds a suitable role, using the
same services and permission checks as the REST API. Superusers see everything."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest

from config.api_errors import ApplicationError
from tenants.models import PEOPLE_ROLES, ApiToken, AuditRecord, Membership, Role, Tenant, TenantGroup
from tenants.services import (
    member_add,
    member_change,
    member_password_link_create,
    member_password_set,
    member_remove,
    member_sign_in_check,
)

ADMIN_ROLES = frozenset({Role.ADMIN})


def tenant_ids_for(request: HttpRequest, roles: frozenset[str]) -> set:
    """Tenants where the user holds one of `roles`, computed once per request."""
    cache = request.__dict__.setdefault("_tenant_ids_for", {})
    if roles not in cache:
        cache[roles] = set(
            Membership.objects.filter(user_id=request.user.pk, role__in=roles).values_list("tenant_id", flat=True)
        )
    return cache[roles]


class TenantListFilter(admin.SimpleListFilter):
    """Lists only the tenants the user may see (the stock related filter lists all)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        tenants = Tenant.objects.all()
        if not request.user.is_superuser:
            tenants = tenants.filter(pk__in=tenant_ids_for(request, model_admin.view_roles))
        return [(str(t.pk), t.slug) for t in tenants]

    def queryset(self, request, queryset):
        return queryset.filter(tenant_id=self.value()) if self.value() else queryset


class TenantScopedAdmin(admin.ModelAdmin):
    view_roles: frozenset[str] = PEOPLE_ROLES
    change_roles: frozenset[str] = frozenset()
    add_roles: frozenset[str] = frozenset()
    delete_roles: frozenset[str] = frozenset()
    tenant_field = "tenant_id"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_field}__in": tenant_ids_for(request, self.view_roles)})

    def _allowed(self, request, roles, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        tenant_ids = tenant_ids_for(request, roles)
        if obj is None:
            return bool(tenant_ids)
        return getattr(obj, self.tenant_field) in tenant_ids

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff and self._allowed(request, self.view_roles)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, self.view_roles, obj)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, self.change_roles, obj)

    def has_add_permission(self, request):
        return self._allowed(request, self.add_roles)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, self.delete_roles, obj)

    def get_list_filter(self, request):
        return [TenantListFilter, *super().get_list_filter(request)]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Tenant and not request.user.is_superuser:
            kwargs["queryset"] = Tenant.objects.filter(pk__in=tenant_ids_for(request, self.add_roles | self.change_roles))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    view_roles = ADMIN_ROLES
    change_roles = ADMIN_ROLES
    tenant_field = "pk"
    list_display = ["slug", "name", "risk_threshold", "finance_limit", "critical_risk", "signoff_role"]
    search_fields = ["slug", "name"]

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["slug"]

    def get_list_filter(self, request):
        return []

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class MembershipForm(forms.ModelForm):
    username = forms.RegexField(r"^[\w.@+-]+\Z", max_length=150,
                                help_text="An existing account, or a new one: give it a password or a one-time "
                                          "set-password link from the member's page afterwards.")

    class Meta:
        model = Membership
        fields = ["tenant", "role", "finance_approver"]

    def clean(self):
        cleaned = super().clean()
        tenant, username = cleaned.get("tenant"), cleaned.get("username")
        if tenant and username and Membership.objects.filter(tenant=tenant, user__username=username).exists():
            self.add_error("username", "Already a member of this tenant.")
        return cleaned


class MemberPasswordForm(forms.Form):
    password1 = forms.CharField(label="New password", widget=forms.PasswordInput, strip=False, required=False)
    password2 = forms.CharField(label="Again", widget=forms.PasswordInput, strip=False, required=False)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif not cleaned.get("password1"):
            self.add_error("password1", "Type the new password twice.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    view_roles = change_roles = add_roles = delete_roles = ADMIN_ROLES
    form = MembershipForm
    change_form_template = "admin/tenants/membership/change_form.html"
    list_display = ["user", "tenant", "role", "finance_approver", "created_at"]
    list_filter = ["role", "finance_approver"]
    search_fields = ["user__username"]
    actions = ["delete_selected"]

    def get_fields(self, request, obj=None):
        return ["tenant", "username", "role", "finance_approver"] if obj is None else ["role", "finance_approver"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        # Memberships change only through the services: team groups and audit follow.
        try:
            if change:
                member_change(membership=Membership.objects.get(pk=obj.pk), role=obj.role,
                              finance_approver=obj.finance_approver, actor=request.user, via="admin")
            else:
                created = member_add(tenant=obj.tenant, username=form.cleaned_data["username"], role=obj.role,
                                     finance_approver=obj.finance_approver, actor=request.user, via="admin")
                # The admin goes on with `obj` (its log entry, its message): make it the row.
                obj.pk, obj.user = created.pk, created.user
        except ApplicationError as exc:
            messages.error(request, exc.message)

    def delete_model(self, request, obj):
        try:
            member_remove(membership=obj, actor=request.user, via="admin")
        except ApplicationError as exc:
            messages.error(request, exc.message)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            self.delete_model(request, membership)

    def get_urls(self):
        from django.urls import path

        own = [path("<path:object_id>/sign-in/", self.admin_site.admin_view(self.sign_in_view),
                    name="tenants_membership_sign_in")]
        return own + super().get_urls()

    def sign_in_view(self, request: HttpRequest, object_id: str):
        """Give the member a password, or a one-time link to set one themselves."""
        from django.contrib.admin.utils import unquote
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        membership = self.get_object(request, unquote(object_id))
        if membership is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, membership):
            raise PermissionDenied
        form, link, refusal = MemberPasswordForm(), None, None
        try:
            member_sign_in_check(membership=membership)
        except ApplicationError as exc:
            refusal = exc.message
        if request.method == "POST" and refusal is None:
            try:
                if request.POST.get("action") == "link":
                    link = request.build_absolute_uri(
                        member_password_link_create(membership=membership, actor=request.user, via="admin"))
                else:
                    form = MemberPasswordForm(request.POST)
                    if form.is_valid():
                        member_password_set(membership=membership, password=form.cleaned_data["password1"],
                                            actor=request.user, via="admin")
                        messages.success(request, f"{membership.user.get_username()} can now sign in with that password.")
                        form = MemberPasswordForm()
            except ApplicationError as exc:
                form.add_error("password1", exc.fields.get("password", [exc.message])[0] if exc.fields else exc.message)
        return TemplateResponse(request, "admin/tenants/membership/sign_in.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "membership": membership, "form": form,
            "link": link, "refusal": refusal, "title": f"Sign-in for {membership.user.get_username()}",
        })


@admin.register(AuditRecord)
class AuditRecordAdmin(TenantScopedAdmin):
    """Read-only for everyone, superusers included: the trail is append-only."""

    view_roles = ADMIN_ROLES
    list_display = ["created_at", "tenant", "actor_username", "action", "interface", "target_type", "target_id"]
    list_filter = ["action", "interface"]
    search_fields = ["actor_username", "target_id", "action"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TenantGroup)
class TenantGroupAdmin(TenantScopedAdmin):
    view_roles = ADMIN_ROLES
    list_display = ["__str__", "tenant", "team", "members"]

    @admin.display(description="members")
    def members(self, obj: TenantGroup) -> str:
        return ", ".join(obj.group.user_set.order_by("username").values_list("username", flat=True))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are not tenant-owned (a user may belong to several tenants): superusers only."""

    list_display = ["prefix", "user", "name", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser


def scoped_users(request: HttpRequest, roles: frozenset[str]) -> QuerySet:
    """Users who are members of the tenants where the signed-in user holds `roles`."""
    users = get_user_model().objects.all()
    if request.user.is_superuser:
        return users
    return users.filter(memberships__tenant_id__in=tenant_ids_for(request, roles)).distinct()


def scoped_groups(request: HttpRequest, roles: frozenset[str]) -> QuerySet:
    groups = Group.objects.filter(tenant_group__isnull=False)
    if request.user.is_superuser:
        return groups
    return groups.filter(tenant_group__tenant_id__in=tenant_ids_for(request, roles))
