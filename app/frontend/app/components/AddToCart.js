"use client";

import { useState } from "react";
import Link from "next/link";
import { announceCart, apiSend } from "./api";

// "Add to cart" for a product card or page: adds `quantity` to the cart's line and
// says what happened next to the button (a screen reader hears it too).
export default function AddToCart({ product, withQuantity = false, className = "button" }) {
  const [quantity, setQuantity] = useState(1);
  const [state, setState] = useState({ status: "idle" });

  async function add() {
    setState({ status: "busy" });
    try {
      const cart = await apiSend("/api/cart", { body: { productId: product.id, add: quantity } });
      announceCart(cart);
      const line = cart.lines.find((l) => l.productId === product.id);
      setState({ status: "added", inCart: line ? line.quantity : quantity });
    } catch (err) {
      setState({ status: "error", message: err.message });
    }
  }

  return (
    <div className="add-to-cart" data-testid="add-to-cart">
      <div className="add-row">
        {withQuantity ? (
          <label className="qty">
            <span>Quantity</span>
            <select value={quantity} onChange={(e) => setQuantity(Number(e.target.value))} data-testid="add-quantity">
              {Array.from({ length: 10 }, (_, i) => (
                <option key={i + 1} value={i + 1}>
                  {i + 1}
                </option>
              ))}
            </select>
          </label>
        ) : null}
        <button
          type="button"
          className={className}
          onClick={add}
          disabled={state.status === "busy"}
          aria-label={`Add ${product.name} to the cart`}
          data-testid="add-button"
        >
          {state.status === "busy" ? "Adding…" : "Add to cart"}
        </button>
      </div>
      <p className="add-status" role="status" aria-live="polite" data-testid="add-status">
        {state.status === "added" ? (
          <>
            In your cart: {state.inCart}. <Link href="/cart">View cart</Link>
          </>
        ) : null}
        {state.status === "error" ? <span className="error-text">{state.message}</span> : null}
      </p>
    </div>
  );
}
