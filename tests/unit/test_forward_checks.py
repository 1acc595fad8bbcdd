"""A forwarder configured wrongly is one line of `manage.py check` (pgnotify.E010), and the same line
when the listener loads it; a good configuration passes."""

import re
import sys

import pytest

from pgnotify.exceptions import HandlerConfigError
from pgnotify.handlers.entries import load_handler
from tests.helpers import support
from tests.helpers.forwarding import handler_errors

SECRET = "a-secret-of-32-characters-000000"


@pytest.mark.parametrize(("handler", "options"), [
    ("Webhook", {"url": "https://example.com/hooks/orders/", "secret": SECRET}),
    ("Webhook", {"url": "http://127.0.0.1:9000/h", "secret": SECRET, "batch": 50, "concurrency": 8,
                 "headers": {"Authorization": "Bearer x"}, "timeout": 2.5}),
    ("RabbitMQ", {}),
    ("RabbitMQ", {"url": "amqps://u:p@rabbit.example.com/vhost", "exchange": "amq.topic"}),
    ("JetStream", {"prefix": "shop.changes", "stream": "SHOP_CHANGES", "create_stream": True}),
    ("RedisStreamForwarder", {"url": "redis://127.0.0.1:6379/2", "maxlen": None, "raw": True}),
])
def test_good_configurations_pass(handler, options):
    assert handler_errors(handler, **options) == []


@pytest.mark.parametrize(("handler", "options", "expected"), [
    ("Webhook", {"url": "ftp://example.com/x", "secret": SECRET}, "must start with http:// or https://"),
    ("Webhook", {"url": "https:///path-only", "secret": SECRET}, "has no host"),
    ("Webhook", {"url": "https://example.com/h"}, "missing a required argument: 'secret'"),
    ("Webhook", {"url": "https://example.com/h", "secret": "short"}, "secret must be a string of at least 16"),
    ("Webhook", {"url": "https://example.com/h", "secret": SECRET, "headers": {"X-Pgnotify-Signature": "x"}},
     "headers may not set X-Pgnotify-Signature"),
    ("Webhook", {"url": "https://example.com/h", "secret": SECRET, "concurrency": 0}, "concurrency must be"),
    ("Webhook", {"url": "https://example.com/h", "secret": SECRET, "dead_letter_file": "/no/such/dir/x.jsonl"},
     "in a directory that does not exist"),
    ("Webhook", {"url": "https://example.com/h", "secret": SECRET, "retries": 3}, "unexpected keyword argument"),
    ("RabbitMQ", {"url": "http://127.0.0.1:5672/"}, "must start with amqp:// or amqps://"),
    ("RabbitMQ", {"exchange": "orders and more"}, "exchange must be a name of 1 to 255"),
    ("RabbitMQ", {"exchange": "amq.topic", "declare": True}, "is one of the broker's own"),
    ("RabbitMQ", {"exchange_type": "fan-out"}, "exchange_type must be one of topic, direct, fanout, headers"),
    ("RabbitMQ", {"batch": 0}, "batch must be a whole number from 1 to 10,000"),
    ("JetStream", {"prefix": "pgnotify.*"}, "prefix must be subject words"),
    ("JetStream", {"prefix": "pgnotify..x"}, "prefix must be subject words"),
    ("JetStream", {"stream": "has space"}, "stream must be a name"),
    ("JetStream", {"url": "redis://127.0.0.1:6379"}, "must start with nats:// or tls://"),
    ("JetStream", {"timeout": 0}, "timeout must be a number of seconds above 0"),
    ("RedisStreamForwarder", {"maxlen": 0}, "maxlen must be a whole number of at least 1, or None"),
    ("RedisStreamForwarder", {"url": "http://127.0.0.1:6379"}, "must start with redis:// or rediss://"),
    ("RedisStreamForwarder", {"raw": "yes"}, "raw must be True or False"),
])
def test_a_bad_configuration_is_one_check_error_and_refused_at_load(handler, options, expected):
    [message] = handler_errors(handler, **options)
    assert message.startswith(f"PGNOTIFY['HANDLERS']: 'pgnotify.forwarding.{handler}'") and expected in message
    with pytest.raises(HandlerConfigError) as refused:  # what the listener says at start: the same line
        load_handler({"handler": f"pgnotify.forwarding.{handler}", "channels": ["orders"], "options": options})
    assert str(refused.value) == message




def test_a_password_or_query_in_a_bad_url_stays_out_of_the_check_output():
    [amqp] = handler_errors("RabbitMQ", url="http://guest:hunter2@127.0.0.1:5672/")
    [hook] = handler_errors("Webhook", url="ftp://example.com/h?token=hunter2", secret=SECRET)
    assert "hunter2" not in amqp + hook
    assert "'http://guest:***@127.0.0.1:5672/'" in amqp and "'ftp://example.com/h?***'" in hook


@pytest.mark.parametrize(("handler", "module", "package", "extra"), [
    ("Webhook", "webhook", "aiohttp", "webhooks"),
    ("RabbitMQ", "rabbitmq", "aio_pika", "rabbitmq"),
    ("JetStream", "jetstream", "nats", "nats"),
])
def test_a_forwarder_without_its_extra_is_one_line_naming_the_extra(monkeypatch, handler, module, package, extra):
    monkeypatch.setitem(sys.modules, package, None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, f"pgnotify.handlers.forwarding.{module}", raising=False)
    [message] = handler_errors(handler, url="https://example.com/h", secret=SECRET)
    assert f'pip install "django-pgnotify[{extra}]"' in message and f"'{package}'" in message


@pytest.mark.parametrize(("handler", "page"), [
    ("RedisStreamForwarder", "redis-streams.md"), ("RabbitMQ", "rabbitmq.md"), ("JetStream", "nats.md"),
    ("Webhook", "webhooks.md"),
])
def test_the_docs_list_each_option_with_its_declared_default(handler, page):
    from dataclasses import MISSING, fields

    from pgnotify import forwarding

    def shown(option) -> str:
        default = option.default_factory() if option.default_factory is not MISSING else option.default
        if default is MISSING:
            return "(required)"
        return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"

    declared = {option.name: shown(option) for option in fields(getattr(forwarding, handler).Options)}
    text = (support.ROOT / "docs" / "forwarding" / page).read_text()
    assert dict(re.findall(r"^\| `(\w+)` \| (\(required\)|`[^`]*`)", text, re.M)) == declared
