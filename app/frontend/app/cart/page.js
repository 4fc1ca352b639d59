import CartView from "./CartView";

export const metadata = { title: "Your cart · StyleSphere" };

export default function CartPage() {
  return <CartView />;
}
