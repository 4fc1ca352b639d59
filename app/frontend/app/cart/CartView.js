"use client";

import Link from "next/link";
import { useRouter } from "next/navigation";
import { useCallback, useEffect, useState } from "react";
import ApiDownBanner from "../components/ApiDownBanner";
import { announceCart, apiGet, apiSend, formatPrice } from "../components/api";

export default function CartView() {
  const router = useRouter();
  const [state, setState] = useState({ status: "loading", cart: null });
  const [message, setMessage] = useState(null);
  const [busy, setBusy] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    apiGet("/api/cart", { signal: controller.signal })
      .then((cart) => setState({ status: "ready", cart }))
      .catch((err) => !controller.signal.aborted && setState({ status: "error", cart: null, detail: err.message }));
    return () => controller.abort();
  }, [attempt]);

  async function change(path, options) {
    setBusy(true);
    setMessage(null);
    try {
      const cart = await apiSend(path, options);
      setState({ status: "ready", cart });
      announceCart(cart);
    } catch (err) {
      setMessage(err.message);
    } finally {
      setBusy(false);
    }
  }

  async function checkout() {
    setBusy(true);
    setMessage(null);
    try {
      const order = await apiSend("/api/orders");
      announceCart({ itemCount: 0 });
      router.push(`/orders/${encodeURIComponent(order.id)}`);
    } catch (err) {
      setMessage(err.message);
      setBusy(false);
      setAttempt((n) => n + 1); // show the cart as the API has it now
    }
  }

  const { cart } = state;

  return (
    <section className="cart-page" aria-labelledby="cart-heading">
      <Link href="/" className="back-link">
        ← Keep shopping
      </Link>
      <h1 id="cart-heading" className="section-title">
        Your cart
      </h1>

      {state.status === "loading" ? <div className="detail-skeleton" aria-busy="true" /> : null}
      {state.status === "error" ? <ApiDownBanner detail={state.detail} onRetry={retry} /> : null}
      {message ? (
        <div className="banner banner-error" role="alert" data-testid="cart-error">
          {message}
        </div>
      ) : null}

      {cart && cart.lines.length === 0 ? (
        <p className="empty" data-testid="cart-empty">
          Your cart is empty. <Link href="/">Find something you will wear for years.</Link>
        </p>
      ) : null}

      {cart && cart.lines.length > 0 ? (
        <>
          <ul className="cart-lines" data-testid="cart-lines">
            {cart.lines.map((line) => (
              <li key={line.productId} className="cart-line" data-testid="cart-line" data-product-id={line.productId}>
                {line.available ? (
                  <img src={line.image_url} alt="" width={80} height={100} />
                ) : (
                  <div className="cart-line-missing" aria-hidden="true" />
                )}
                <div className="cart-line-info">
                  {line.available ? (
                    <Link href={`/products/${encodeURIComponent(line.productId)}`} className="cart-line-name">
                      {line.name}
                    </Link>
                  ) : (
                    <span className="cart-line-name">{line.productId} is no longer available</span>
                  )}
                  {line.available ? <span className="card-price">{formatPrice(line.unitPrice, line.currency)}</span> : null}
                </div>
                <label className="qty">
                  <span className="visually-hidden">Quantity of {line.name || line.productId}</span>
                  <select
                    value={line.quantity}
                    disabled={busy || !line.available}
                    onChange={(e) =>
                      change("/api/cart", { body: { productId: line.productId, quantity: Number(e.target.value) } })
                    }
                    data-testid="line-quantity"
                  >
                    {Array.from({ length: cart.maxQuantity || 10 }, (_, i) => (
                      <option key={i + 1} value={i + 1}>
                        {i + 1}
                      </option>
                    ))}
                  </select>
                </label>
                <span className="cart-line-total" data-testid="line-total">
                  {line.available ? formatPrice(line.lineTotal, line.currency) : "–"}
                </span>
                <button
                  type="button"
                  className="link-button"
                  disabled={busy}
                  onClick={() => change("/api/cart", { method: "DELETE", body: { productId: line.productId } })}
                  aria-label={`Remove ${line.name || line.productId}`}
                  data-testid="remove-line"
                >
                  Remove
                </button>
              </li>
            ))}
          </ul>
          <div className="cart-summary">
            <p>
              Total ({cart.itemCount} {cart.itemCount === 1 ? "item" : "items"}):{" "}
              <strong data-testid="cart-total">{formatPrice(cart.total, cart.currency)}</strong>
            </p>
            <button type="button" className="button" onClick={checkout} disabled={busy} data-testid="checkout">
              {busy ? "Placing your order…" : "Place order"}
            </button>
          </div>
        </>
      ) : null}
    </section>
  );
}
