import { defineConfig } from 'vite';

// No React plugin: the JSX transform is built in; the app needs no fast
// refresh to be built and tested.
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic' } },
  build: { outDir: 'dist', emptyOutDir: true },
});
