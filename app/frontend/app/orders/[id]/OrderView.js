"use client";

import Link from "next/link";
import { useCallback, useEffect, useState } from "react";
import ApiDownBanner from "../../components/ApiDownBanner";
import { apiGet, formatPrice } from "../../components/api";

export default function OrderView({ id }) {
  const [state, setState] = useState({ status: "loading" });
  const [attempt, setAttempt] = useState(0);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    apiGet(`/api/orders/${encodeURIComponent(id)}`, { signal: controller.signal })
      .then((order) => setState({ status: "ready", order }))
      .catch((err) => {
        if (controller.signal.aborted) return;
        setState({ status: err.status === 404 ? "missing" : "error", detail: err.message });
      });
    return () => controller.abort();
  }, [id, attempt]);

  const { order } = state;

  return (
    <section className="order-page" aria-labelledby="order-heading">
      <Link href="/" className="back-link">
        ← Back to the shop
      </Link>
      {state.status === "loading" ? <div className="detail-skeleton" aria-busy="true" /> : null}
      {state.status === "error" ? <ApiDownBanner detail={state.detail} onRetry={retry} /> : null}
      {state.status === "missing" ? (
        <div className="banner" role="status" data-testid="order-missing">
          <strong>We could not find that order.</strong> Orders are shown only in the browser that placed them.
        </div>
      ) : null}
      {order ? (
        <div className="order" data-testid="order" data-order-id={order.id}>
          <h1 id="order-heading" className="section-title">
            Thank you, your order is placed
          </h1>
          <p className="order-meta">
            Order <strong data-testid="order-id">{order.id}</strong> ·{" "}
            <time dateTime={order.createdAt}>{new Date(order.createdAt).toLocaleString("en-IE")}</time>
          </p>
          <ul className="cart-lines">
            {order.lines.map((line) => (
              <li key={line.productId} className="cart-line order-line" data-testid="order-line">
                <span className="cart-line-name">
                  {line.quantity} × {line.name}
                </span>
                <span className="cart-line-total">{formatPrice(line.lineTotal, order.currency)}</span>
              </li>
            ))}
          </ul>
          <p className="cart-summary">
            Total: <strong data-testid="order-total">{formatPrice(order.total, order.currency)}</strong>
          </p>
          <p>
            <a href={order.receiptUrl} data-testid="receipt-link">
              View the receipt (text)
            </a>
          </p>
        </div>
      ) : null}
    </section>
  );
}
