"""Offline validation of rendered Kubernetes objects.

Schema: every object is checked against the typed models of the official Kubernetes
Python client (Debian's python3-kubernetes, generated from the API's OpenAPI spec):
each field must exist in its model (an unknown or misspelt field is an error, as with
kubectl's --validate=strict), have the model's type, and the models' own client-side
validation must accept the object (required fields). Then the API server's semantic
rules that no schema expresses, for the fields these manifests use (from
pkg/apis/core/validation and pkg/apis/apps/validation in kubernetes/kubernetes).
"""

import re

from kubernetes.client import models
from kubernetes.client.api_client import ApiClient
from kubernetes.utils import parse_quantity

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# IANA_SVC_NAME: port names, at most 15 characters, at least one letter.
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice"}
PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "datetime": (str,)}


def model_class(api_version, kind):
    """V1DaemonSet for apps/v1 DaemonSet; None for kinds the client has no model of."""
    version = api_version.split("/")[-1]
    return getattr(models, version[0].upper() + version[1:] + kind, None)


def check_types(value, type_name, path, errors):
    """Appends to errors every unknown field and type mismatch under value."""
    if value is None:
        return
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append("%s: want %s, got %r" % (path, type_name, value))
        return
    if type_name == "object":  # IntOrString, Quantity and the like
        if not isinstance(value, (str, int, dict)) or isinstance(value, bool):
            errors.append("%s: want a string or an integer, got %r" % (path, value))
        return
    match = re.fullmatch(r"list\[(.+)\]", type_name)
    if match:
        if not isinstance(value, list):
            errors.append("%s: want a list, got %r" % (path, value))
            return
        for i, item in enumerate(value):
            check_types(item, match.group(1), "%s[%d]" % (path, i), errors)
        return
    match = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if match:
        if not isinstance(value, dict):
            errors.append("%s: want a map, got %r" % (path, value))
            return
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append("%s: key %r is not a string" % (path, key))
            check_types(item, match.group(1), "%s[%s]" % (path, key), errors)
        return
    klass = getattr(models, type_name)
    if not isinstance(value, dict):
        errors.append("%s: want an object (%s), got %r" % (path, type_name, value))
        return
    fields = {json_name: klass.openapi_types[attr] for attr, json_name in klass.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            errors.append("%s: unknown field %r in %s" % (path, key, type_name))
            continue
        check_types(item, fields[key], "%s.%s" % (path, key), errors)


def schema_errors(obj):
    """Errors of obj against its model; [] if it is valid. Raises KeyError for a kind
    without a model (custom resources)."""
    klass = model_class(obj.get("apiVersion", ""), obj.get("kind", ""))
    if klass is None:
        raise KeyError("no model for %s %s" % (obj.get("apiVersion"), obj.get("kind")))
    where = "%s/%s" % (obj["kind"], obj.get("metadata", {}).get("name", "?"))
    errors = []
    check_types(obj, klass.__name__, where, errors)
    if not errors:
        try:
            # The generated constructors refuse a missing required field.
            ApiClient()._ApiClient__deserialize(obj, klass.__name__)
        except (ValueError, TypeError) as e:
            errors.append("%s: %s" % (where, e))
    return errors


def _has_capability(container, name):
    caps = ((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
    return any(c in (name, "CAP_" + name) for c in caps)


def container_errors(container, volume_names, where):
    errors = []
    if not DNS1123_LABEL.match(container["name"]):
        errors.append("%s: container name %r is not a DNS-1123 label" % (where, container["name"]))
    ports = {}
    for port in container.get("ports") or []:
        name = port.get("name")
        if name is not None:
            if len(name) > 15 or not PORT_NAME.match(name) or not re.search("[a-z]", name):
                errors.append("%s: port name %r is not an IANA service name" % (where, name))
            if name in ports:
                errors.append("%s: duplicate port name %r" % (where, name))
            ports[name] = port["containerPort"]
        if not 1 <= port["containerPort"] <= 65535:
            errors.append("%s: containerPort %d out of range" % (where, port["containerPort"]))
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if not probe:
            continue
        handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h)]
        if len(handlers) != 1:
            errors.append("%s: %s must have exactly one handler, has %s" % (where, kind, handlers))
        for field in ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"):
            if field in probe and probe[field] < 1:
                errors.append("%s: %s.%s must be at least 1" % (where, kind, field))
        port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
        if isinstance(port, str) and port not in ports:
            errors.append("%s: %s names port %r, which the container does not have" % (where, kind, port))
    env_names = set()
    for env in container.get("env") or []:
        if not ENV_NAME.match(env["name"]):
            errors.append("%s: env name %r is invalid" % (where, env["name"]))
        if env["name"] in env_names:
            errors.append("%s: env %r set twice" % (where, env["name"]))
        env_names.add(env["name"])
    paths = set()
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volume_names:
            errors.append("%s: volumeMount %r names no volume" % (where, mount["name"]))
        if not mount["mountPath"].startswith("/"):
            errors.append("%s: mountPath %r is not absolute" % (where, mount["mountPath"]))
        if mount["mountPath"] in paths:
            errors.append("%s: two mounts on %s" % (where, mount["mountPath"]))
        paths.add(mount["mountPath"])
    resources = container.get("resources") or {}
    for res, req in (resources.get("requests") or {}).items():
        limit = (resources.get("limits") or {}).get(res)
        try:
            if limit is not None and parse_quantity(req) > parse_quantity(limit):
                errors.append("%s: %s request %s exceeds its limit %s" % (where, res, req, limit))
        except ValueError as e:
            errors.append("%s: %s: %s" % (where, res, e))
    for res, limit in (resources.get("limits") or {}).items():
        try:
            parse_quantity(limit)
        except ValueError as e:
            errors.append("%s: limit %s: %s" % (where, res, e))
    sc = container.get("securityContext") or {}
    # ValidateSecurityContext: no_new_privs cannot hold for privileged or CAP_SYS_ADMIN.
    if sc.get("allowPrivilegeEscalation") is False and (sc.get("privileged") or _has_capability(container, "SYS_ADMIN")):
        errors.append("%s: allowPrivilegeEscalation false with privileged or CAP_SYS_ADMIN is refused" % where)
    return errors


def pod_template_errors(template, selector, where):
    errors = []
    labels = (template.get("metadata") or {}).get("labels") or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            errors.append("%s: selector %s=%s does not match the template's labels" % (where, key, value))
    spec = template["spec"]
    volumes = spec.get("volumes") or []
    names = [v["name"] for v in volumes]
    if len(set(names)) != len(names):
        errors.append("%s: duplicate volume names %s" % (where, names))
    for v in volumes:
        if not DNS1123_LABEL.match(v["name"]):
            errors.append("%s: volume name %r is not a DNS-1123 label" % (where, v["name"]))
        sources = [k for k in v if k != "name"]
        if len(sources) != 1:
            errors.append("%s: volume %r must have exactly one source, has %s" % (where, v["name"], sources))
        host_path = v.get("hostPath")
        if host_path and host_path.get("type", "") not in HOST_PATH_TYPES:
            errors.append("%s: hostPath type %r is invalid" % (where, host_path["type"]))
    container_names = set()
    for c in (spec.get("initContainers") or []) + spec["containers"]:
        if c["name"] in container_names:
            errors.append("%s: duplicate container name %r" % (where, c["name"]))
        container_names.add(c["name"])
        errors += container_errors(c, set(names), "%s/%s" % (where, c["name"]))
    for t in spec.get("tolerations") or []:
        if t.get("operator", "Equal") == "Exists" and t.get("value"):
            errors.append("%s: a toleration with operator Exists must have no value" % where)
        if not t.get("key") and t.get("operator") != "Exists":
            errors.append("%s: a toleration without key must use operator Exists" % where)
    return errors


def daemonset_errors(ds):
    where = "DaemonSet/%s" % ds["metadata"]["name"]
    spec = ds["spec"]
    errors = pod_template_errors(spec["template"], spec["selector"], where)
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    surge, unavailable = rolling.get("maxSurge", 0), rolling.get("maxUnavailable", 1)
    if surge in (0, "0%") and unavailable in (0, "0%"):
        errors.append("%s: maxSurge and maxUnavailable cannot both be 0" % where)
    return errors
