// Charts drawn by Chart.js on a canvas, each with a text summary and its data as a table, so the
// numbers are there for screen readers, keyboard users and narrow screens alike.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export function cssColor(name: string, fallback: string): string {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

export function BarChart({
  config,
  label,
  caption,
  table,
}: {
  config: ChartConfiguration<"bar">;
  label: string;
  caption: string;
  table: ComponentChildren;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<"bar"> | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const text = cssColor("--text", "#1d2330");
    const grid = cssColor("--border", "#d0d5de");
    Chart.defaults.color = text;
    Chart.defaults.borderColor = grid;
    chart.current = new Chart(canvas.current, config);
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, []);
  useEffect(() => {
    if (!chart.current) return;
    chart.current.data = config.data;
    chart.current.options = config.options ?? {};
    chart.current.update("none");
  }, [config]);
  return (
    <figure class="chart">
      <figcaption>{caption}</figcaption>
      <div class="chart-canvas">
        <canvas ref={canvas} role="img" aria-label={label} />
      </div>
      <details>
        <summary>Show the data as a table</summary>
        <div class="table-wrap">{table}</div>
      </details>
    </figure>
  );
}
