import OrderView from "./OrderView";

export const metadata = { title: "Your order · StyleSphere" };

export default async function OrderPage({ params }) {
  const { id } = await params;
  return <OrderView id={id} />;
}
