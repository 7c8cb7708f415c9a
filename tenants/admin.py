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
from tenants.services import member_add, member_change, member_remove

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
    username = forms.RegexField(r"^[\w.@+-]+\Z", max_length=150, help_text="An existing account, or a new one without a password.")

    class Meta:
        model = Membership
        fields = ["tenant", "role", "finance_approver"]

    def clean(self):
        cleaned = super().clean()
        tenant, username = cleaned.get("tenant"), cleaned.get("username")
        if tenant and username and Membership.objects.filter(tenant=tenant, user__username=username).exists():
            self.add_error("username", "Already a member of this tenant.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    view_roles = change_roles = add_roles = delete_roles = ADMIN_ROLES
    form = MembershipForm
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
                obj.pk = created.pk
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
    list_display = ["tenant", "team", "members"]

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
