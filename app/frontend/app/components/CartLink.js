"use client";

import Link from "next/link";
import { useEffect, useState } from "react";
import { CART_CHANGED, apiGet } from "./api";

// The header's cart link with the number of items; it follows changes made on the page.
export default function CartLink() {
  const [count, setCount] = useState(null);

  useEffect(() => {
    const controller = new AbortController();
    apiGet("/api/cart", { signal: controller.signal })
      .then((cart) => setCount(cart.itemCount))
      .catch(() => {});
    const onChange = (e) => setCount(e.detail ? e.detail.itemCount : null);
    window.addEventListener(CART_CHANGED, onChange);
    return () => {
      controller.abort();
      window.removeEventListener(CART_CHANGED, onChange);
    };
  }, []);

  return (
    <Link href="/cart" className="cart-link" data-testid="cart-link">
      Cart{count ? <span className="cart-count" data-testid="cart-count"> {count}</span> : null}
      {count ? <span className="visually-hidden"> items</span> : null}
    </Link>
  );
}
