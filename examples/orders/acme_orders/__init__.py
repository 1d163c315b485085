"""Acme's order records for the record processor: the ``order.v1`` model and its stock check.

An example of a team bringing its own record type and check without forking the processor:
``acme_orders.models:OrderV1`` is named in the processor's config (or found through this
package's entry point), and ``acme_orders.checks:stock_available`` is a custom check.
"""
