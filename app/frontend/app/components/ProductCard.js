"use client";

import Link from "next/link";
import AddToCart from "./AddToCart";
import { categoryLabel, formatPrice } from "./api";

export default function ProductCard({ product }) {
  return (
    <li className="card" data-testid="product-card" data-category={product.category}>
      <Link href={`/products/${encodeURIComponent(product.id)}`} className="card-link">
        <div className="card-image">
          {/* Plain <img>: images are served straight from the assets bucket. */}
          <img src={product.image_url} alt={product.name} width={400} height={500} loading="lazy" />
        </div>
        <div className="card-body">
          <span className="card-category">{categoryLabel(product.category)}</span>
          <h2 className="card-title">{product.name}</h2>
          <span className="card-price">{formatPrice(product.price, product.currency)}</span>
        </div>
      </Link>
      <div className="card-actions">
        <AddToCart product={product} className="button button-small" />
      </div>
    </li>
  );
}
