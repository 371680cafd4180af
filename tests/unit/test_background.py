"""Periodic work: expiry sweeps, the outbox relay, and the invariant check."""

from __future__ import annotations

from stockade.application.expiry import cancel_overdue_orders, release_expired_holds
from stockade.application.services import PROCESS_ORDER
from stockade.domain.model import HoldStatus, OrderStatus

from .fakes import make_shop


def test_sweep_releases_each_expired_hold_exactly_once(shop, store, clock, phone):
    expiring = [shop.hold(phone.id, q) for q in (2, 3, 1)]
    clock.advance(60)
    live = shop.hold(phone.id, 1)
    clock.advance(60)

    assert shop.sweep().holds_expired == 3
    assert shop.sweep().holds_expired == 0
    assert store.product(phone.id).reserved == 1
    assert [store.hold(h.id).status for h in expiring] == [HoldStatus.EXPIRED] * 3
    assert store.hold(live.id).status is HoldStatus.ACTIVE
    assert sorted(e.data["hold_id"] for e in store.events("hold_released")) == [1, 2, 3]
    assert [e.data for e in store.events("holds_batch_released")] == [{"count": 3}]


def test_sweep_leaves_holds_within_their_ttl_alone(shop, store, clock, phone):
    hold = shop.hold(phone.id, 2)
    clock.advance(119)
    assert shop.sweep().holds_expired == 0
    assert store.hold(hold.id).status is HoldStatus.ACTIVE
    assert store.product(phone.id).reserved == 2


def test_sweep_releases_more_expired_holds_than_one_batch():
    shop, store, _, clock = make_shop(sweep_batch=2)
    product = shop.create_product("Pen", 1, 10)
    for _ in range(5):
        shop.hold(product.id, 1)
    clock.advance(121)
    assert shop.sweep().holds_expired == 5
    assert store.product(product.id).reserved == 0
    assert sum(e.data["count"] for e in store.events("holds_batch_released")) == 5


def test_sweep_cancels_orders_unpaid_after_the_payment_ttl_and_gives_units_back(shop, store, clock, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 4).id).order
    clock.advance(899)
    assert shop.sweep().orders_cancelled == 0
    clock.advance(1)
    assert shop.sweep().orders_cancelled == 1
    assert shop.sweep().orders_cancelled == 0
    assert store.order(order.id).status is OrderStatus.CANCELLED
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (10, 0)
    [event] = store.events("order_cancelled")
    assert event.data["reason"] == "payment_timeout"


def test_sweep_leaves_paid_orders_alone(shop, store, clock, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 4).id).order
    shop.payment("k", order.id, "success")
    clock.advance(901)
    assert shop.sweep().orders_cancelled == 0
    assert store.order(order.id).status is OrderStatus.PAID
    assert store.product(phone.id).stock == 6


def test_purchase_blocked_by_an_overdue_order_succeeds(shop, store, clock, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 10).id).order
    clock.advance(900)
    shop.purchase(phone.id, 10)
    assert store.order(order.id).status is OrderStatus.CANCELLED
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (0, 0)


def test_relay_republishes_uncompleted_messages_once_their_retry_time_passed(shop, store, publisher, clock, phone):
    shop.purchase(phone.id, 1)
    publisher.published.clear()
    assert shop.relay_outbox() == 0
    clock.advance(60)
    assert shop.relay_outbox() == 1
    [message] = publisher.published
    assert message.task == PROCESS_ORDER and message == store.messages()[0].message
    assert shop.relay_outbox() == 0


def test_relay_does_not_republish_completed_messages(shop, publisher, clock, phone):
    shop.purchase(phone.id, 1)
    [message] = publisher.published
    shop.process_order(message.payload["order_id"], message.id)
    publisher.published.clear()
    clock.advance(3600)
    assert shop.relay_outbox() == 0
    assert publisher.published == []


def test_relayed_message_is_published_again_after_another_retry_interval(shop, publisher, clock, phone):
    shop.purchase(phone.id, 1)
    clock.advance(60)
    shop.relay_outbox()
    clock.advance(60)
    assert shop.sweep().messages_relayed == 1
    assert len(publisher.published) == 3


def test_check_of_a_consistent_store_is_ok(shop, phone):
    shop.purchase(phone.id, 1)
    shop.hold(phone.id, 2)
    shop.order_from_hold(shop.hold(phone.id, 3).id)
    report = shop.check()
    assert report.ok and report.products_checked == 1


def test_check_names_the_product_whose_reserved_counter_drifted(shop, store, phone):
    other = shop.create_product("Case", 5, 3)
    shop.hold(phone.id, 2)
    store.corrupt_product(phone.id, reserved=5)
    report = shop.check()
    assert not report.ok
    [drift] = report.drifts
    assert (drift.product_id, drift.name, drift.reserved, drift.expected_reserved) == (phone.id, "Phone", 5, 2)
    assert other.id not in [d.product_id for d in report.drifts]


def test_check_reports_negative_available(shop, store, phone):
    store.corrupt_product(phone.id, stock=1, reserved=2)
    [drift] = shop.check().drifts
    assert "available is negative" in drift.problems


def test_sweeper_does_not_release_a_hold_that_was_released_meanwhile(shop, store, clock, phone):
    hold = shop.hold(phone.id, 4)
    now = clock.advance(121)
    with shop.deps.uow() as uow:
        seen = uow.holds.expired(now, 10)  # this sweeper read the row...
        uow.holds.end(hold.id, HoldStatus.RELEASED, now)  # ...then its owner released it
        uow.holds.expired = lambda *args, **kwargs: seen
        assert release_expired_holds(uow, shop.deps.policy, now) == 0
        uow.commit()
    assert store.product(phone.id).reserved == 4
    assert store.events("hold_released") == []


def test_sweeper_does_not_cancel_an_order_that_was_paid_meanwhile(shop, store, clock, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 4).id).order
    now = clock.advance(901)
    with shop.deps.uow() as uow:
        seen = uow.orders.overdue(now, 10)
        uow.orders.transition(order.id, OrderStatus.PENDING, OrderStatus.PAID, now)
        uow.orders.overdue = lambda *args, **kwargs: seen
        assert cancel_overdue_orders(uow, shop.deps.policy, now) == 0
        uow.commit()
    assert store.product(phone.id).reserved == 4
    assert store.events("order_cancelled") == []


def test_relay_leaves_a_started_message_alone_until_its_lease_runs_out():
    """Started: the relay waits processing time + retry period, then takes the worker for dead."""
    shop, store, publisher, clock = make_shop(processing_seconds=5)
    product = shop.create_product("Pen", 1, 10)
    shop.purchase(product.id, 1)
    [message] = publisher.published
    with shop.deps.uow() as uow:  # a worker starts the task, then dies
        uow.outbox.start(message.id, clock.now(), clock.now() + shop.deps.policy.task_lease)
        uow.commit()
    publisher.published.clear()
    clock.advance(64)
    assert shop.relay_outbox() == 0
    clock.advance(1)
    assert shop.relay_outbox() == 1
    assert publisher.published == [message]


def test_relay_does_not_send_again_messages_waiting_their_turn_behind_a_busy_queue(shop, store, publisher, clock):
    """Workers keep starting older messages: the newer ones are only queued, not lost."""
    product = shop.create_product("Pen", 1, 100)
    first, *queued = [shop.purchase(product.id, 1).order.id for _ in range(5)]
    messages = {m.payload["order_id"]: m for m in publisher.published}
    publisher.published.clear()
    clock.advance(59)
    shop.process_order(first, messages[first].id)  # the queue reached the first message only
    clock.advance(10)

    assert shop.relay_outbox() == 0
    assert publisher.published == []
    assert [r.attempts for r in store.messages()[1:]] == [0, 0, 0, 0]


def test_relay_sends_again_a_message_the_queue_has_moved_past():
    """A message sent after it has started: the earlier one was lost on the way."""
    shop, store, publisher, clock = make_shop()
    product = shop.create_product("Pen", 1, 100)
    lost, later = [shop.purchase(product.id, 1).order.id for _ in range(2)]
    messages = {m.payload["order_id"]: m for m in publisher.published}
    publisher.published.clear()
    clock.advance(1)
    shop.process_order(later, messages[later].id)
    clock.advance(60)

    assert shop.relay_outbox() == 1
    assert publisher.published == [messages[lost]]
    assert [(r.attempts, r.deliveries) for r in store.messages()] == [(1, 0), (0, 1)]


def test_relay_sends_again_what_is_due_when_no_task_started_anything_for_a_retry_period(shop, store, publisher, clock):
    """Nothing drains the queue (no worker, or the broker lost it): due messages go out again."""
    product = shop.create_product("Pen", 1, 100)
    done, waiting = [shop.purchase(product.id, 1).order.id for _ in range(2)]
    messages = {m.payload["order_id"]: m for m in publisher.published}
    shop.process_order(done, messages[done].id)
    publisher.published.clear()
    clock.advance(59)
    assert shop.relay_outbox() == 0
    clock.advance(1)
    assert shop.relay_outbox() == 1
    assert publisher.published == [messages[waiting]]


def test_every_start_of_a_task_counts_as_a_delivery_and_the_second_has_no_effect(shop, store, publisher, phone):
    view = shop.purchase(phone.id, 1)
    [message] = publisher.published
    assert shop.process_order(view.order.id, message.id).processed
    assert not shop.process_order(view.order.id, message.id).processed
    [row] = store.messages()
    assert row.deliveries == 2 and row.completed_at is not None
    assert len(store.events("order_processed")) == 1


def test_backlog_counts_what_background_work_has_still_to_do(shop, clock, phone):
    shop.hold(phone.id, 1)
    shop.order_from_hold(shop.hold(phone.id, 1).id)
    shop.purchase(phone.id, 1)
    shop.payment("early", 99, "success")
    clock.advance(12)

    backlog = shop.backlog()

    assert (backlog.outbox_pending, backlog.outbox_oldest_seconds, backlog.task_lag_seconds) == (1, 12.0, 12.0)
    assert (backlog.active_holds, backlog.pending_orders, backlog.deferred_webhooks) == (1, 1, 1)
