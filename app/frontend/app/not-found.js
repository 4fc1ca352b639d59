import Link from "next/link";

export default function NotFound() {
  return (
    <div className="banner" role="status">
      <strong>This page does not exist.</strong> <Link href="/">Back to the shop</Link>
    </div>
  );
}
